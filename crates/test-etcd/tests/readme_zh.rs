//! The Chinese READMEs stay at parity with the English ones (issue 17): README.zh-CN.md beside README.md,
//! and crates/<topic>/README.zh-CN.md beside the README.md of each of the article's five topics. Each pair
//! links to each other in its first lines, and holds the same commands: every ```sh and ```rust block, every
//! transcript that starts with `$ cargo run` (the English one is checked against the program by the topic's
//! tests/readme.rs, so the Chinese one is too), and every line that runs `cargo run -p`.

use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// What must be the same in both languages: every ```sh and ```rust block, every ```text transcript that
/// starts with `$ cargo run`, and every `cargo run -p` command, in a block or in prose (in backquotes,
/// which may wrap over lines).
fn commands(doc: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut block: Option<(String, String)> = None;
    let mut paragraph = String::new();
    for line in doc.lines().chain(std::iter::once("")) {
        match &mut block {
            Some((fence, text)) if line == "```" => {
                let is_command = fence == "```sh" || fence == "```rust";
                let is_transcript = fence == "```text" && text.starts_with("$ cargo run");
                if is_command || is_transcript {
                    found.push(format!("{fence}\n{text}"));
                }
                block = None;
            }
            Some((_, text)) => {
                if line.contains("cargo run -p") {
                    found.push(line.trim().to_string());
                }
                text.push_str(line);
                text.push('\n');
            }
            None if line.starts_with("```") || line.trim().is_empty() => {
                commands_in_prose(&paragraph, &mut found);
                paragraph.clear();
                if line.starts_with("```") {
                    block = Some((line.to_string(), String::new()));
                }
            }
            None => {
                paragraph.push_str(line.trim());
                paragraph.push(' ');
            }
        }
    }
    found
}

/// The `cargo run -p` commands in a paragraph (or a table row): each in backquotes.
fn commands_in_prose(paragraph: &str, found: &mut Vec<String>) {
    for (i, part) in paragraph.split('`').enumerate() {
        if i % 2 == 1 && part.contains("cargo run -p") {
            found.push(part.trim().to_string());
        }
    }
}

fn check_pair(english: &Path, chinese: &Path) -> Vec<String> {
    let (en, zh) = (read(english), read(chinese));
    let mut wrong = Vec::new();
    let en_name = english
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let zh_name = chinese
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let head = |doc: &str| doc.lines().take(5).collect::<Vec<_>>().join("\n");
    if !head(&en).contains(&format!("({zh_name})")) {
        wrong.push(format!(
            "{}: no link to {zh_name} in its first lines",
            english.display()
        ));
    }
    if !head(&zh).contains(&format!("({en_name})")) {
        wrong.push(format!(
            "{}: no link to {en_name} in its first lines",
            chinese.display()
        ));
    }
    let (en_commands, zh_commands) = (commands(&en), commands(&zh));
    for command in &en_commands {
        if !zh_commands.contains(command) {
            wrong.push(format!(
                "{} lacks, from {}:\n{command}",
                chinese.display(),
                english.display()
            ));
        }
    }
    for command in &zh_commands {
        if !en_commands.contains(command) {
            wrong.push(format!(
                "{} lacks, from {}:\n{command}",
                english.display(),
                chinese.display()
            ));
        }
    }
    wrong
}

#[test]
fn the_chinese_readme_has_every_command_of_the_english_one() {
    let wrong = check_pair(&repo().join("README.md"), &repo().join("README.zh-CN.md"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn each_article_topic_has_a_chinese_readme_with_the_same_commands_and_transcript() {
    let mut wrong = Vec::new();
    for topic in ["kv", "watch", "lease", "keepalive", "lock"] {
        let dir = repo().join(format!("crates/{topic}"));
        let chinese = dir.join("README.zh-CN.md");
        if !chinese.exists() {
            wrong.push(format!("{} does not exist", chinese.display()));
            continue;
        }
        wrong.extend(check_pair(&dir.join("README.md"), &chinese));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn a_missing_command_is_found() {
    let en = "```sh\nscripts/etcd.sh up\n```\nrun `cargo run -p kv --\n--key k1`\n";
    let zh = "```sh\nscripts/etcd.sh up\n```\n";
    let (en_commands, zh_commands) = (commands(en), commands(zh));
    assert_eq!(
        en_commands,
        ["```sh\nscripts/etcd.sh up\n", "cargo run -p kv -- --key k1"]
    );
    assert!(!zh_commands.contains(&en_commands[1]));
}
