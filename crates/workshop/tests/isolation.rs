//! A learner's exercise that does not compile does not stop the check of another. The checker builds one
//! exercise with `cargo build --bin exNN` (`build_args`, unit-tested in src/build.rs); this shows cargo
//! building one binary of a package while another binary of it does not compile, in a throwaway package.

use std::fs;
use std::process::Command;

#[test]
fn cargo_builds_one_binary_while_another_does_not_compile() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let package = dir.path();
    fs::create_dir_all(package.join("src/bin")).expect("create src/bin");
    fs::write(
        package.join("Cargo.toml"),
        "[package]\nname = \"isolation\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .expect("write Cargo.toml");
    fs::write(
        package.join("src/bin/ex03.rs"),
        "fn main() { println!(\"three\"); }\n",
    )
    .expect("write ex03");
    fs::write(
        package.join("src/bin/ex05.rs"),
        "fn main() { let x: u8 = \"not yet\"; }\n",
    )
    .expect("write ex05");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = |bin: &str| {
        Command::new(&cargo)
            .args(["build", "--quiet", "--offline", "--bin", bin])
            .current_dir(package)
            .env("CARGO_TARGET_DIR", package.join("target"))
            .output()
            .expect("run cargo")
    };
    let three = build("ex03");
    assert!(
        three.status.success(),
        "{}",
        String::from_utf8_lossy(&three.stderr)
    );
    let five = build("ex05");
    assert!(
        !five.status.success(),
        "exercise 5 was meant not to compile"
    );
    assert!(String::from_utf8_lossy(&five.stderr).contains("mismatched types"));
}
