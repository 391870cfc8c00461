//! One reply limit for every watch in the topics (issue 15, item 5: discovery's watcher kept etcd-client's
//! 4 MiB default and exited 1 on a replay of sixty 100 kB instances).
//!
//! `etcd_connect::MAX_RESPONSE` is the limit for the topics' `main.rs`; the watch and discovery topics'
//! `src/lib.rs` repeat it, because each of those files is meant to be copied alone. These tests keep the
//! copies equal and make sure no topic opens a watch with `client.watch(..)`, which keeps the default.

use std::fs;
use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/ is the parent of crates/etcd-connect")
        .to_path_buf()
}

/// The value of `pub const MAX_RESPONSE: usize = ...;` in a source file, as written.
fn declared_limit(file: &Path) -> String {
    let source =
        fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let line = source
        .lines()
        .find(|l| l.starts_with("pub const MAX_RESPONSE: usize ="))
        .unwrap_or_else(|| panic!("{} declares no MAX_RESPONSE", file.display()));
    line.trim_start_matches("pub const MAX_RESPONSE: usize =")
        .trim()
        .trim_end_matches(';')
        .to_string()
}

#[test]
fn the_copies_of_the_limit_are_equal() {
    let ours = declared_limit(&crates_dir().join("etcd-connect/src/lib.rs"));
    for copy in ["watch/src/lib.rs", "discovery/src/lib.rs"] {
        assert_eq!(
            declared_limit(&crates_dir().join(copy)),
            ours,
            "crates/{copy}'s MAX_RESPONSE differs from etcd-connect's: keep them the same"
        );
    }
    assert_eq!(etcd_connect::MAX_RESPONSE, 64 * 1024 * 1024);
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
