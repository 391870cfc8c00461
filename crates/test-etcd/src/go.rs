//! The Go twins of the article's topics (`crates/<topic>/go/main.go`): built with Debian's Go and etcd 3.4's
//! Go client in GOPATH mode (nothing from the Go module proxy), run beside the Rust topic, and their output
//! compared step line by step line, values and revisions aside.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `golang-etcd-server-dev` puts etcd's Go client: the GOPATH the twins build in.
pub const GOPATH: &str = "/usr/share/gocode";

const HOW_TO_INSTALL: &str = "install Go and etcd's Go client with `scripts/install-deps.sh --go` \
     (Debian: apt-get install golang-go golang-etcd-server-dev)";

/// Builds `crates/<topic>/go` and returns the binary's path. Fails, saying how to install what is
/// missing, when Go or etcd's Go client is not there.
pub fn build_go_twin(topic: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let client = Path::new(GOPATH).join("src/go.etcd.io/etcd/clientv3");
    assert!(
        client.is_dir(),
        "etcd's Go client is not at {}: {HOW_TO_INSTALL}",
        client.display()
    );
    let out_dir = repo.join("target/go-twins");
    std::fs::create_dir_all(&out_dir).expect("create target/go-twins");
    // One file per test process: nextest runs tests of one binary in parallel processes.
    let binary = out_dir.join(format!("{topic}-{}", std::process::id()));
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(repo.join(format!("crates/{topic}/go")))
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOFLAGS", "")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `go` ({e}): {HOW_TO_INSTALL}"));
    assert!(
        built.status.success(),
        "go build crates/{topic}/go failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    binary
}

/// One printed line with what varies from run to run replaced: lease IDs and lock keys' hex (`<id>`),
/// then every number (`<n>`).
pub fn normalized(line: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let is_id = word.len() >= 8 && word.chars().all(|c| c.is_ascii_hexdigit());
        let is_number = !word.is_empty() && word.chars().all(|c| c.is_ascii_digit() || c == '.');
        if is_id && !is_number {
            out.push_str("<id>");
        } else if is_number && word.chars().any(|c| c.is_ascii_digit()) {
            out.push_str("<n>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in line.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The article part of a program's output: its lines up to `-- beyond the article --`, normalized, with
/// repeats in a row (renewals, countdown) kept once.
pub fn article_lines(stdout: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in stdout
        .lines()
        .take_while(|l| *l != "-- beyond the article --")
    {
        let line = normalized(line);
        if lines.last() != Some(&line) {
            lines.push(line);
        }
    }
    lines
}

/// The numbered step lines (`1. ...`) of [`article_lines`].
pub fn step_lines(stdout: &str) -> Vec<String> {
    article_lines(stdout)
        .into_iter()
        .filter(|l| l.starts_with("<n> "))
        .collect()
}

/// Checks that the Go twin and the Rust topic printed the same steps: the same numbered step lines, and
/// every line of the Go twin's, in order, among the Rust topic's (which may say a little more).
pub fn assert_same_steps(go: &str, rust: &str) {
    let (go_steps, rust_steps) = (step_lines(go), step_lines(rust));
    assert!(!go_steps.is_empty(), "the Go twin printed no step:\n{go}");
    assert_eq!(
        go_steps, rust_steps,
        "the Go twin and the Rust topic print different steps.\nGo:\n{go}\nRust:\n{rust}"
    );
    let rust_lines = article_lines(rust);
    let mut rest = rust_lines.iter();
    for line in article_lines(go) {
        assert!(
            rest.any(|r| *r == line),
            "the Go twin's line {line:?} is not among the Rust topic's, in order.\nGo:\n{go}\nRust:\n{rust}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_and_numbers_are_set_aside() {
        assert_eq!(
            normalized("1. granted lease 6dc1a24254e8d91d with a TTL of 5s"),
            "<n> granted lease <id> with a TTL of 5s"
        );
        assert_eq!(
            normalized("   ttl: 5 (renewal 12: lease 6dc1a24254e8d91d has 5s again)"),
            "   ttl: <n> (renewal <n>: lease <id> has 5s again)"
        );
        assert_eq!(
            normalized("2. put name = ferris (store revision is now 14)"),
            "<n> put name = ferris (store revision is now <n>)"
        );
        assert_eq!(normalized("renewing every 1.7s"), "renewing every 1.7s");
    }

    #[test]
    fn the_article_part_ends_at_the_marker_and_repeats_are_kept_once() {
        let out = "a\n   ttl: 5 (renewal 1)\n   ttl: 5 (renewal 2)\n-- beyond the article --\nb\n";
        assert_eq!(article_lines(out), ["a", "   ttl: <n> (renewal <n>)"]);
    }

    #[test]
    #[should_panic(expected = "print different steps")]
    fn a_different_step_fails() {
        let go = "connected\n1. put name = ferris (revision 3)\n";
        let rust = "connected\n1. put name = crab (revision 4)\n";
        assert_same_steps(go, rust);
    }

    #[test]
    #[should_panic(expected = "is not among the Rust topic's")]
    fn a_go_line_the_rust_topic_does_not_print_fails() {
        let go = "connected to etcd at 127.0.0.1:2379\n1. put\n";
        let rust = "1. put\n";
        assert_same_steps(go, rust);
    }
}
