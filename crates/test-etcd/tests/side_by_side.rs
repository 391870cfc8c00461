//! Each article topic's README (both languages) shows its Go twin and its Rust side by side, step by step.
//! Every excerpt names its file on its first line (`// go/main.go`, `// src/main.rs`) and must be found
//! there, line after line (indentation aside): an edit to either program that the README does not follow
//! fails here.

use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The excerpts of a README: (file named on the first line, the lines after it).
fn excerpts(readme: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let mut block: Option<Vec<String>> = None;
    for line in readme.lines() {
        match &mut block {
            None if line == "```go" || line == "```rust" => block = Some(Vec::new()),
            None => {}
            Some(lines) if line == "```" => {
                let first = lines.first().cloned().unwrap_or_default();
                if let Some(file) = first
                    .strip_prefix("// ")
                    .filter(|f| f.ends_with(".go") || f.ends_with(".rs"))
                {
                    found.push((file.to_string(), lines[1..].to_vec()));
                }
                block = None;
            }
            Some(lines) => lines.push(line.to_string()),
        }
    }
    found
}

/// Whether `excerpt` appears in `source` as consecutive lines, indentation aside.
fn appears_in(excerpt: &[String], source: &str) -> bool {
    let source: Vec<&str> = source.lines().map(str::trim).collect();
    let excerpt: Vec<&str> = excerpt.iter().map(|l| l.trim()).collect();
    !excerpt.is_empty()
        && source
            .windows(excerpt.len())
            .any(|w| w == excerpt.as_slice())
}

#[test]
fn every_excerpt_is_in_its_file_and_each_readme_has_both_languages() {
    let mut wrong = Vec::new();
    for topic in ["kv", "watch", "lease", "keepalive", "lock"] {
        let dir = repo().join(format!("crates/{topic}"));
        for readme in ["README.md", "README.zh-CN.md"] {
            let text = fs::read_to_string(dir.join(readme)).unwrap_or_default();
            let found = excerpts(&text);
            let go = found.iter().filter(|(f, _)| f.ends_with(".go")).count();
            let rust = found.iter().filter(|(f, _)| f.ends_with(".rs")).count();
            if go < 3 || rust < 3 {
                wrong.push(format!(
                    "crates/{topic}/{readme}: {go} Go and {rust} Rust excerpts, fewer than 3"
                ));
            }
            for (file, lines) in &found {
                let source = fs::read_to_string(dir.join(file)).unwrap_or_default();
                if !appears_in(lines, &source) {
                    wrong.push(format!(
                        "crates/{topic}/{readme}: not in {file}:\n{}",
                        lines.join("\n")
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn an_edited_line_is_not_found() {
    let source = "fn main() {\n    let a = 1;\n    let b = 2;\n}\n";
    assert!(appears_in(
        &["let a = 1;".into(), "let b = 2;".into()],
        source
    ));
    assert!(!appears_in(
        &["let a = 1;".into(), "let b = 3;".into()],
        source
    ));
}
