//! Building one exercise alone, so that another exercise that does not compile yet stops nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::check::Verdict;
use crate::exercises::Exercise;

/// The repository's top folder, where `cargo build` runs.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the exercise's binary (`cargo build --bin ex03`) and returns its path, or the verdict "not yet:
/// it does not compile" with the first error. With `WORKSHOP_BIN_DIR` set, takes the binary built there
/// instead (the workshop's own tests do, as `cargo test` has built every exercise already).
pub fn binary(exercise: &Exercise, solution: bool) -> Result<PathBuf, Verdict> {
    let name = exercise.binary(solution);
    if let Some(dir) = std::env::var_os("WORKSHOP_BIN_DIR") {
        return Ok(PathBuf::from(dir).join(name));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(build_args(&name))
        .current_dir(repository())
        .output();
    let built = match built {
        Ok(built) => built,
        Err(e) => {
            return Err(Verdict::not_yet(
                format!("cargo could not run ({e})"),
                "is cargo on PATH?",
            ))
        }
    };
    if !built.status.success() {
        let stderr = String::from_utf8_lossy(&built.stderr);
        return Err(Verdict::not_yet(
            format!(
                "{} does not compile: {}",
                exercise.source(solution),
                first_error(&stderr)
            ),
            &format!("fix the first error that `cargo build -p workshop --bin {name}` shows"),
        ));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("target"));
    Ok(target.join("debug").join(name))
}

/// `cargo build` of one binary alone: cargo then compiles that target only, so another exercise that does
/// not compile does not stop it (tests/isolation.rs shows cargo doing so).
pub fn build_args(binary: &str) -> [&str; 6] {
    ["build", "--quiet", "-p", "workshop", "--bin", binary]
}

/// The first `error` line of cargo's output, with the place it points at.
fn first_error(stderr: &str) -> String {
    let mut lines = stderr.lines();
    let Some(error) = lines.find(|l| l.starts_with("error")) else {
        return "see `cargo build` for why".to_string();
    };
    match lines.next().and_then(|l| l.trim().strip_prefix("--> ")) {
        Some(place) => format!("{error} (at {place})"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exercise_is_built_alone() {
        assert_eq!(
            build_args("ex03"),
            ["build", "--quiet", "-p", "workshop", "--bin", "ex03"]
        );
    }

    #[test]
    fn the_first_error_comes_with_its_place() {
        let stderr = "warning: x\nerror[E0308]: mismatched types\n  --> crates/workshop/exercises/01_put_get.rs:20:5\n";
        assert_eq!(
            first_error(stderr),
            "error[E0308]: mismatched types (at crates/workshop/exercises/01_put_get.rs:20:5)"
        );
    }
}
