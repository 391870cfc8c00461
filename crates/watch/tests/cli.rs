//! The real `watch` binary, end to end, against a throwaway etcd. Writes are made only after the binary
//! printed its `watching` line: from then on etcd guarantees the watch reports them.

use std::time::Duration;

use test_etcd::{
    assert_fails_fast_on_dead_endpoint, assert_refused, delete, free_port, get_value, put, Bin,
    Output, Signal, TestEtcd,
};

const WATCH: &str = env!("CARGO_BIN_EXE_watch");
const LIMIT: Duration = Duration::from_secs(15);
/// Long enough for a killed member to restart and the watcher's backoff to find it.
const RECONNECT_LIMIT: Duration = Duration::from_secs(25);

/// The printed lines that report a change, in order.
fn change_lines(out: &Output) -> Vec<&str> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("PUT ") || l.starts_with("DELETE "))
        .collect()
}

fn watching_lines(out: &Output) -> usize {
    out.stdout
        .lines()
        .filter(|l| l.contains("watching"))
        .count()
}

#[tokio::test]
async fn prints_put_put_delete_in_order_and_exits_after_count() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(WATCH, &etcd.endpoint(), &["--count", "3"]);
    bin.line_containing("watching name", LIMIT).await;

    let first = put(&mut client, "name", "hello").await;
    let second = put(&mut client, "name", "world").await;
    let gone = delete(&mut client, "name").await;
    let out = bin.finish(LIMIT).await;

    assert!(out.status.success(), "{out:#?}");
    assert_eq!(
        change_lines(&out),
        [
            format!("PUT name = hello (revision {first})"),
            format!("PUT name = world (revision {second})"),
            format!("DELETE name (revision {gone})"),
        ]
    );
    assert_eq!(watching_lines(&out), 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("canceled on the server"),
        "{}",
        out.stdout
    );
    assert_eq!(
        get_value(&mut client, "name").await,
        None,
        "a watcher only reads: the delete stands"
    );
}

#[tokio::test]
async fn prefix_sees_keys_under_it_and_not_others() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(
        WATCH,
        &etcd.endpoint(),
        &["--key", "/app/", "--prefix", "--count", "2"],
    );
    bin.line_containing("watching every key under /app/", LIMIT)
        .await;

    let a = put(&mut client, "/app/a", "1").await;
    put(&mut client, "/other", "x").await;
    let b = put(&mut client, "/app/b", "2").await;
    let out = bin.finish(LIMIT).await;

    assert!(out.status.success(), "{out:#?}");
    assert_eq!(
        change_lines(&out),
        [
            format!("PUT /app/a = 1 (revision {a})"),
            format!("PUT /app/b = 2 (revision {b})"),
        ],
        "/other, written in between, must not be counted"
    );
    assert_eq!(get_value(&mut client, "/other").await.as_deref(), Some("x"));
}

#[tokio::test]
async fn rev_replays_history_written_before_it_started() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let first = put(&mut client, "name", "v1").await;
    let second = put(&mut client, "name", "v2").await;
    let gone = delete(&mut client, "name").await;

    let rev = first.to_string();
    let out = Bin::run(
        WATCH,
        &etcd.endpoint(),
        &["--rev", &rev, "--count", "3"],
        LIMIT,
    )
    .await;

    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout
            .contains(&format!("watching name from revision {first} (replaying")),
        "{}",
        out.stdout
    );
    assert_eq!(
        change_lines(&out),
        [
            format!("PUT name = v1 (revision {first})"),
            format!("PUT name = v2 (revision {second})"),
            format!("DELETE name (revision {gone})"),
        ]
    );
}

#[tokio::test]
async fn rev_beyond_the_current_revision_says_it_waits_for_it() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let now = put(&mut client, "name", "v0").await;
    let future = now + 3;

    let rev = future.to_string();
    let mut bin = Bin::spawn(WATCH, &etcd.endpoint(), &["--rev", &rev, "--count", "1"]);
    let watching = bin.line_containing("watching", LIMIT).await;
    assert_eq!(
        watching,
        format!("watching name from revision {future}; stopping after 1 change(s) or Ctrl-C"),
        "nothing to replay yet"
    );
    let waiting = bin.line_containing("in the future", LIMIT).await;
    assert_eq!(
        waiting.trim(),
        format!(
            "revision {future} is in the future: the store is at revision {now}, and changes from \
             revision {future} on will show as they happen"
        )
    );

    put(&mut client, "name", "v1").await;
    put(&mut client, "name", "v2").await;
    let third = put(&mut client, "name", "v3").await;
    assert_eq!(third, future);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(
        change_lines(&out),
        [format!("PUT name = v3 (revision {future})")],
        "changes before the start revision are not reported"
    );
}

#[tokio::test]
async fn resumes_after_an_etcd_restart_without_losing_or_repeating_changes() {
    let mut etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(WATCH, &etcd.endpoint(), &["--dial-timeout", "2"]);
    bin.line_containing("watching name", LIMIT).await;

    let before = put(&mut client, "name", "before").await;
    bin.line_containing("PUT name = before", LIMIT).await;

    // SIGKILL and start again on the same ports and data, then write at once: the watcher is most likely
    // still reconnecting, so this change must come from the resumed watch's history.
    etcd.restart().await;
    let mut client = etcd.client().await;
    let after = put(&mut client, "name", "after").await;
    bin.line_containing("lost the connection", RECONNECT_LIMIT)
        .await;
    bin.line_containing(
        &format!("resumed from revision {}", before + 1),
        RECONNECT_LIMIT,
    )
    .await;
    bin.line_containing("PUT name = after", LIMIT).await;
    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;

    assert!(out.status.success(), "{out:#?}");
    assert_eq!(
        change_lines(&out),
        [
            format!("PUT name = before (revision {before})"),
            format!("PUT name = after (revision {after})"),
        ],
        "each change exactly once, in order"
    );
    assert_eq!(watching_lines(&out), 1, "{}", out.stdout);
}

#[tokio::test]
async fn a_compacted_start_prints_the_current_state_then_goes_on() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let old = put(&mut client, "name", "old").await;
    let kept = put(&mut client, "name", "kept").await;
    client.compact(kept, None).await.expect("compact succeeds");

    let rev = old.to_string();
    let mut bin = Bin::spawn(WATCH, &etcd.endpoint(), &["--rev", &rev, "--count", "1"]);
    bin.line_containing("watching", LIMIT).await;
    let compacted = bin.line_containing("compacted", LIMIT).await;
    assert!(
        compacted.contains(&format!("revision {old} was compacted"))
            && compacted.contains(&format!("from revision {kept} on")),
        "{compacted}"
    );
    bin.line_containing(&format!("at revision {kept} (read with GET)"), LIMIT)
        .await;
    bin.line_containing(
        &format!("name = kept (last written at revision {kept})"),
        LIMIT,
    )
    .await;
    bin.line_containing(&format!("continuing from revision {}", kept + 1), LIMIT)
        .await;

    let new = put(&mut client, "name", "new").await;
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(
        change_lines(&out),
        [format!("PUT name = new (revision {new})")]
    );
}

#[tokio::test]
async fn sigint_and_sigterm_cancel_the_watch_and_exit_0() {
    let etcd = TestEtcd::start().await;
    for (signal, name) in [(Signal::SIGINT, "Ctrl-C"), (Signal::SIGTERM, "SIGTERM")] {
        let mut bin = Bin::spawn(WATCH, &etcd.endpoint(), &[]);
        bin.line_containing("watching", LIMIT).await;
        bin.signal(signal);
        let out = bin.finish(LIMIT).await;
        assert!(out.status.success(), "{name}: {out:#?}");
        let stopped = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("stopped ({name}): watch ")))
            .unwrap_or_else(|| panic!("{name}: no stop line in:\n{}", out.stdout));
        assert!(stopped.ends_with("canceled on the server"), "{stopped}");
        assert!(out.stderr.is_empty(), "{name}: {}", out.stderr);
    }
}

#[tokio::test]
async fn a_signal_while_reconnecting_exits_0() {
    let mut etcd = TestEtcd::start().await;
    let mut bin = Bin::spawn(WATCH, &etcd.endpoint(), &["--dial-timeout", "1"]);
    bin.line_containing("watching", LIMIT).await;
    etcd.kill();
    bin.line_containing("lost the connection", LIMIT).await;
    bin.signal(Signal::SIGTERM);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains("stopped (SIGTERM) while reconnecting"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_connecting() {
    // Nothing listens here: a refusal that mentions the flag proves the input was checked first.
    let dead = format!("127.0.0.1:{}", free_port());
    for (args, why) in [
        (vec!["--key", ""], "--key"),
        (vec!["--count", "0"], "not a count"),
        (vec!["--rev", "0"], "not a revision"),
        (vec!["--rev", "-5"], "not a revision"),
        (vec!["--count", "many"], "not a count"),
    ] {
        let out = assert_refused(WATCH, &dead, &args, why).await;
        assert!(
            !out.stderr.contains("cannot reach"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn dead_endpoint_fails_fast_with_one_clear_line() {
    let out = assert_fails_fast_on_dead_endpoint(WATCH, &[]).await;
    assert_eq!(watching_lines(&out), 0, "{}", out.stdout);
}

/// A killed etcd answers nothing: the line says the connection broke, in the transport's words, and never
/// "etcd answered". The top README shows this line in its cluster transcript (a member killed under the
/// watch): it must be the line the program prints.
#[tokio::test]
async fn a_killed_etcd_is_a_broken_connection_not_an_answer() {
    let mut etcd = TestEtcd::start().await;
    let mut bin = Bin::spawn(WATCH, &etcd.endpoint(), &["--dial-timeout", "1"]);
    bin.line_containing("watching", LIMIT).await;
    etcd.kill();
    let lost = bin.line_containing("lost the connection", LIMIT).await;
    assert!(!lost.contains("etcd answered"), "{lost}");
    assert!(
        lost.starts_with("lost the connection to etcd (the HTTP/2 connection broke: "),
        "{lost}"
    );
    let readme = include_str!("../../../README.md");
    assert!(
        readme.lines().any(|line| line == lost),
        "README.md shows the line the watch prints when its etcd is killed: {lost}"
    );
    bin.signal(Signal::SIGTERM);
    assert!(bin.finish(LIMIT).await.status.success());
}
