//! The bad-input table of docs/faults.md, for what every topic shares (keys, endpoints, flags, etcd's
//! limits), run through the real `kv` binary: each input gets one clear `error:` line and a non-zero exit,
//! never a panic or a hang, and nothing is written.

use std::time::{Duration, Instant};

use test_etcd::{assert_refused, free_port, get_value, Bin, Output, TestEtcd};

const KV: &str = env!("CARGO_BIN_EXE_kv");

/// clap's exit code for a command line it refuses; etcd's own refusals exit 1.
const USAGE: i32 = 2;

async fn refused(etcd: &TestEtcd, args: &[&str], why: &str, code: i32) -> Output {
    let out = assert_refused(KV, &etcd.endpoint(), args, why).await;
    assert_eq!(out.status.code(), Some(code), "{args:?}: {out:#?}");
    let mut client = etcd.client().await;
    assert_eq!(
        get_value(&mut client, "name").await,
        None,
        "{args:?} wrote nothing"
    );
    out
}

#[tokio::test]
async fn an_empty_key_is_refused() {
    let etcd = TestEtcd::start().await;
    refused(&etcd, &["--key", ""], "a key cannot be empty", USAGE).await;
}

#[tokio::test]
async fn a_key_with_a_newline_is_refused() {
    let etcd = TestEtcd::start().await;
    let out = refused(
        &etcd,
        &["--key", "two\nlines"],
        "control character '\\n'",
        USAGE,
    )
    .await;
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains(r#""two\nlines""#) && first.contains("use printable characters"),
        "the whole message is on one line, the key shown escaped: {out:#?}"
    );
}

#[tokio::test]
async fn malformed_endpoints_are_refused() {
    let etcd = TestEtcd::start().await;
    for (endpoints, why) in [
        ("http//x", "is not an endpoint"),
        (":abc", "is not an endpoint"),
        ("", "is not an endpoint"),
        ("127.0.0.1:0", "has no valid port"),
    ] {
        refused(&etcd, &["--endpoints", endpoints], why, USAGE).await;
    }
}

#[tokio::test]
async fn an_empty_endpoint_list_from_the_environment_is_refused() {
    // ETCD_ENDPOINTS set but empty, as after `export ETCD_ENDPOINTS=$UNSET_VARIABLE`.
    let out = Bin::run(KV, "", &[], Duration::from_secs(30)).await;
    test_etcd::assert_clean_failure(&out);
    assert!(out.stderr.contains("is not an endpoint"), "{out:#?}");
}

#[tokio::test]
async fn a_port_with_nothing_listening_fails_within_the_dial_timeout() {
    let dead = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = Bin::run(KV, &dead, &["--dial-timeout", "1"], Duration::from_secs(30)).await;
    assert!(
        started.elapsed() < Duration::from_secs(1 + 2),
        "{:?}",
        started.elapsed()
    );
    test_etcd::assert_clean_failure(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr
            .contains(&format!("cannot reach etcd at {dead}: connection refused")),
        "{out:#?}"
    );
    assert!(out.stderr.contains("scripts/etcd.sh up"), "{out:#?}");
}

#[tokio::test]
async fn a_value_over_etcds_request_limit_is_refused_in_one_line() {
    // A 2 MiB value does not fit on a command line, so this etcd takes at most 1 KiB per request.
    let etcd = TestEtcd::start_with(&["--max-request-bytes=1024"]).await;
    let big = "x".repeat(2000);
    let out = refused(&etcd, &["--value", &big], "request is too large", 1).await;
    assert!(
        out.stderr
            .contains("etcd refuses requests over --max-request-bytes, 1.5 MiB by default"),
        "{out:#?}"
    );
    assert!(
        !out.stderr.contains("grpc") && !out.stderr.contains(&big),
        "{out:#?}"
    );
}

#[tokio::test]
async fn a_negative_dial_timeout_is_a_range_error() {
    let etcd = TestEtcd::start().await;
    refused(
        &etcd,
        &["--dial-timeout", "-1"],
        "must be more than 0",
        USAGE,
    )
    .await;
}

#[tokio::test]
async fn an_unknown_flag_is_refused_with_a_suggestion() {
    let etcd = TestEtcd::start().await;
    let out = refused(
        &etcd,
        &["--endpoint", "x"],
        "unexpected argument '--endpoint'",
        USAGE,
    )
    .await;
    assert!(
        out.stderr.contains("--endpoints"),
        "suggests the real flag: {out:#?}"
    );
}
