//! The Go twin (`go/main.go`, etcd's own Go client) and the Rust topic, watching one etcd side by side: the
//! same lines for the same three changes, values and revisions aside.

use std::time::Duration;

use test_etcd::go::{assert_same_steps, build_go_twin};
use test_etcd::{delete, get_value, put, Bin, TestEtcd};

const WATCH: &str = env!("CARGO_BIN_EXE_watch");
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_go_twin_and_the_rust_topic_print_the_same_changes() {
    let go = build_go_twin("watch");
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;

    let args = ["--count", "3"];
    let mut go_run = Bin::spawn(go.to_str().expect("a UTF-8 path"), &etcd.endpoint(), &args);
    let mut rust_run = Bin::spawn(WATCH, &etcd.endpoint(), &args);
    go_run
        .line_containing("watching name from revision", LIMIT)
        .await;
    rust_run
        .line_containing("watching name from revision", LIMIT)
        .await;
    put(&mut client, "name", "hello").await;
    put(&mut client, "name", "world").await;
    delete(&mut client, "name").await;
    let (go_out, rust_out) = (go_run.finish(LIMIT).await, rust_run.finish(LIMIT).await);
    assert!(go_out.status.success(), "{go_out:#?}");
    assert!(rust_out.status.success(), "{rust_out:#?}");

    assert_same_steps_or_events(&go_out.stdout, &rust_out.stdout);
    assert_eq!(
        get_value(&mut client, "name").await,
        None,
        "both only watched"
    );
    std::fs::remove_file(go).ok();
}

/// watch prints events, not numbered steps: every line of the Go twin's must be among the Rust topic's,
/// in order, and both must show the three changes.
fn assert_same_steps_or_events(go: &str, rust: &str) {
    for out in [go, rust] {
        for change in ["PUT name = hello", "PUT name = world", "DELETE name"] {
            assert!(out.contains(change), "missing {change:?} in:\n{out}");
        }
    }
    let go_lines: Vec<String> = test_etcd::go::article_lines(go);
    let rust_lines: Vec<String> = test_etcd::go::article_lines(rust);
    let mut rest = rust_lines.iter();
    for line in &go_lines {
        assert!(
            rest.any(|r| r == line),
            "the Go twin's line {line:?} is not among the Rust topic's, in order.\nGo:\n{go}\nRust:\n{rust}"
        );
    }
    // And the numbered steps, if there are any, are the same.
    if go.lines().any(|l| l.starts_with("1. ")) {
        assert_same_steps(go, rust);
    }
}
