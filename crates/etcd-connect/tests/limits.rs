//! One reply limit for every watch in the topics (issue 15, item 5: discovery's watcher kept etcd-client's
//! 4 MiB default and exited 1 on a replay of sixty 100 kB instances).
//!
//! `recipes::resuming_watch::MAX_RESPONSE` is the one limit, declared once. These tests check that, and make
//! sure no topic opens a watch with `client.watch(..)`, which keeps the default.

use std::fs;
use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/ is the parent of crates/etcd-connect")
        .to_path_buf()
}

#[test]
fn the_limit_is_declared_once_in_the_recipes() {
    let declared: Vec<PathBuf> = topic_sources()
        .into_iter()
        .filter(|file| {
            fs::read_to_string(file)
                .expect("read a source file")
                .lines()
                .any(|l| l.trim_start().starts_with("pub const MAX_RESPONSE"))
        })
        .collect();
    assert_eq!(
        declared,
        [crates_dir().join("recipes/src/resuming_watch.rs")],
        "MAX_RESPONSE is declared once, in recipes::resuming_watch"
    );
    assert_eq!(recipes::resuming_watch::MAX_RESPONSE, 64 * 1024 * 1024);
}

/// Every `.rs` file under a topic's `src/`.
fn topic_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for krate in fs::read_dir(crates_dir()).expect("read crates/") {
        let src = krate.expect("a crates/ entry").path().join("src");
        let Ok(entries) = fs::read_dir(&src) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a src/ entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn no_topic_opens_a_watch_with_the_default_limit() {
    let mut offenders = Vec::new();
    for file in topic_sources() {
        let source = fs::read_to_string(&file).expect("read a source file");
        // Code only: a line comment may name `client.watch` to warn against it.
        let code: String = source
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        // `client.watch(..)`, possibly split over lines as rustfmt writes a method chain.
        let squeezed: String = code.split_whitespace().collect();
        let opens_default = squeezed.match_indices("client.watch(").any(|(at, _)| {
            // `client.watch(`, not `watch_client.watch(` (a WatchClient whose limit was raised).
            !squeezed[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        });
        if opens_default {
            offenders.push(file.display().to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "these open a watch with `client.watch(..)`, which keeps etcd-client's 4 MiB reply limit; use \
         `client.watch_client().max_decoding_message_size(MAX_RESPONSE)`: {offenders:?}"
    );
}
