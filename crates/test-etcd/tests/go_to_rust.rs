//! docs/go-to-rust.md and its Chinese twin map each Go call of the article to its Rust counterpart, with a
//! link to the line of a topic that makes it. Each link is checked: the line it points at holds the call
//! named beside it, and that call is the one in the row's Rust column. A line that moved fails here.

use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Go calls the map must cover (issue 17's list).
const GO_CALLS: &[&str] = &[
    "clientv3.New",
    "cli.Close",
    "cli.Put",
    "cli.Get",
    "cli.Delete",
    "WithPrefix",
    "WithRev",
    "WithPrevKV",
    "cli.Watch",
    "range rch",
    "cli.Grant",
    "WithLease",
    "cli.Revoke",
    "cli.TimeToLive",
    "cli.KeepAlive(",
    "cli.KeepAliveOnce",
    "concurrency.NewSession",
    "concurrency.NewMutex",
    "m.Lock",
    "m.Unlock",
    "m.TryLock",
    "s.Close",
    "context.WithTimeout",
    "defer",
    "rpctypes.Err",
];

fn check(doc_name: &str) -> Vec<String> {
    let doc = fs::read_to_string(repo().join("docs").join(doc_name))
        .unwrap_or_else(|e| panic!("read docs/{doc_name}: {e}"));
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.starts_with("| `") || l.starts_with("| ("))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    let mut wrong = Vec::new();
    for call in GO_CALLS {
        if !rows.iter().any(|row| row[0].contains(call)) {
            wrong.push(format!("docs/{doc_name}: no row for {call}"));
        }
    }
    for row in &rows {
        let (rust, place) = (&row[1], &row[2]);
        // `[path:line](../crates/path#Lline) `needle``
        let Some((link, rest)) = place.split_once("](../crates/") else {
            wrong.push(format!("docs/{doc_name}: no link in {place:?}"));
            continue;
        };
        let _ = link;
        let (target, needle) = rest.split_once(") `").unwrap_or((rest, ""));
        let needle = needle.trim_end_matches('`');
        let (file, line) = target.split_once("#L").unwrap_or((target, "0"));
        let line: usize = line.parse().unwrap_or(0);
        let source = fs::read_to_string(repo().join("crates").join(file)).unwrap_or_default();
        let held = source.lines().nth(line.saturating_sub(1)).unwrap_or("");
        if needle.is_empty() || !held.contains(needle) {
            wrong.push(format!(
                "docs/{doc_name}: crates/{file}#L{line} should hold `{needle}` but is {held:?}"
            ));
        }
        // The name called: `Client::connect(` is `connect`, `.with_prefix()` is `with_prefix`.
        let call = needle.split('(').next().unwrap_or(needle);
        let call = call.rsplit(['.', ':']).next().unwrap_or(call);
        // A row whose Rust column is prose ("nothing to build") names no call.
        if !rust.contains(call) && rust.starts_with('`') {
            wrong.push(format!(
                "docs/{doc_name}: `{needle}` is not the Rust call {rust}"
            ));
        }
    }
    wrong
}

#[test]
fn every_link_of_the_map_points_at_its_call() {
    let mut wrong = check("go-to-rust.md");
    wrong.extend(check("go-to-rust.zh-CN.md"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
