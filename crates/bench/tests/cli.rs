//! The real `bench` binary, end to end, against a throwaway etcd: each subcommand with a small --total
//! prints etcd's summary lines, writes what it says, and cleans up after itself.

use std::time::Duration;

use test_etcd::{
    assert_clean_failure, assert_fails_fast_on_dead_endpoint, assert_refused, free_port,
    keys_under, lease_ids, put, Bin, Output, Signal, TestEtcd,
};

const BENCH: &str = env!("CARGO_BIN_EXE_bench");
const LIMIT: Duration = Duration::from_secs(30);
/// clap's exit code for a command line it refuses.
const USAGE: i32 = 2;

async fn bench(etcd: &TestEtcd, args: &[&str]) -> Output {
    let out = Bin::run(BENCH, &etcd.endpoint(), args, LIMIT).await;
    assert!(out.status.success(), "{args:?}: {out:#?}");
    out
}

fn assert_summary(out: &Output, requests: &str) {
    for line in [
        "Summary:",
        "  Total:\t",
        "  Slowest:\t",
        "  Fastest:\t",
        "  Average:\t",
        "  Stddev:\t",
        "  Requests/sec:\t",
        "Latency distribution:",
        "  10% in ",
        "  50% in ",
        "  90% in ",
        "  99% in ",
        "  99.9% in ",
    ] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in:\n{}",
            out.stdout
        );
    }
    let figures = format!("{requests}: p50 ");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with(&figures) && l.contains(", slowest ")),
        "missing {figures:?} in:\n{}",
        out.stdout
    );
}

async fn revision(etcd: &TestEtcd) -> i64 {
    let mut client = etcd.client().await;
    let resp = client.get("any", None).await.unwrap();
    resp.header().unwrap().revision()
}

#[tokio::test]
async fn put_writes_exactly_the_key_space_and_deletes_it() {
    let etcd = TestEtcd::start().await;
    let args = [
        "put",
        "--total",
        "200",
        "--clients",
        "4",
        "--conns",
        "2",
        "--sequential-keys",
        "--key-space-size",
        "50",
        "--val-size",
        "256",
    ];
    let out = bench(&etcd, &args).await;
    assert_summary(&out, "200 puts");
    assert!(
        out.stdout
            .contains("deleted the 50 keys written under /bench/"),
        "{}",
        out.stdout
    );
    // Random keys in a key space of one: every put overwrites the same key.
    let out = bench(&etcd, &["put", "--total", "200", "--clients", "8"]).await;
    assert!(out.stdout.contains("deleted the 1 keys"), "{}", out.stdout);
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/bench/").await.is_empty());
}

#[tokio::test]
async fn the_runtime_is_current_thread_unless_multi_is_asked_for() {
    let etcd = TestEtcd::start().await;
    for (args, flavor) in [
        (&["put", "--total", "20"][..], "Current"),
        (&["put", "--total", "20", "--runtime", "multi"][..], "Multi"),
        (&[][..], "Current"),
    ] {
        let out = Bin::spawn_with_env(
            BENCH,
            &etcd.endpoint(),
            args,
            &[("RUST_LOG", "bench=debug")],
        )
        .finish(LIMIT)
        .await;
        assert!(out.status.success(), "{args:?}: {out:#?}");
        assert!(
            out.stderr.contains(&format!("tokio runtime: {flavor}")),
            "{args:?}: no \"tokio runtime: {flavor}\" in:\n{}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn range_reads_both_ways_and_writes_nothing() {
    let etcd = TestEtcd::start().await;
    let before = revision(&etcd).await;
    for consistency in ["l", "s"] {
        let args = [
            "range",
            "/bench/k",
            "--consistency",
            consistency,
            "--total",
            "200",
            "--clients",
            "4",
        ];
        let out = bench(&etcd, &args).await;
        assert_summary(&out, "200 reads");
    }
    assert_eq!(revision(&etcd).await, before, "reads do not write");
}

#[tokio::test]
async fn txn_put_advances_the_revision_once_per_transaction() {
    let etcd = TestEtcd::start().await;
    let before = revision(&etcd).await;
    let out = bench(
        &etcd,
        &[
            "txn-put",
            "--total",
            "200",
            "--txn-ops",
            "50",
            "--clients",
            "2",
        ],
    )
    .await;
    assert_summary(&out, "4 transactions");
    assert!(
        out.stdout.contains("deleted the 200 keys"),
        "{}",
        out.stdout
    );
    // 200 puts in 4 transactions are 4 revisions, and the clean-up delete one more.
    assert_eq!(revision(&etcd).await, before + 200 / 50 + 1);
}

#[tokio::test]
async fn lease_keepalive_revokes_every_lease_it_granted() {
    let etcd = TestEtcd::start().await;
    let out = bench(
        &etcd,
        &[
            "lease-keepalive",
            "--total",
            "200",
            "--clients",
            "4",
            "--conns",
            "2",
        ],
    )
    .await;
    assert_summary(&out, "200 renewals");
    assert!(
        out.stdout.contains("revoked the 4 lease(s) it granted"),
        "{}",
        out.stdout
    );
    let mut client = etcd.client().await;
    assert!(lease_ids(&mut client).await.is_empty(), "no lease is left");
}

#[tokio::test]
async fn watch_latency_times_every_event() {
    let etcd = TestEtcd::start().await;
    let out = bench(&etcd, &["watch-latency", "--put-total", "200"]).await;
    assert_summary(&out, "200 watch events");
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/bench/").await.is_empty());
}

#[tokio::test]
async fn a_prefix_that_holds_keys_is_refused_and_left_alone() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    put(&mut client, "/bench/theirs", "x").await;
    let out = assert_refused(
        BENCH,
        &etcd.endpoint(),
        &["put", "--total", "10"],
        "already holds",
    )
    .await;
    assert!(out.stderr.contains("/bench/theirs"), "{out:#?}");
    assert_eq!(keys_under(&mut client, "/bench/").await, ["/bench/theirs"]);
}

#[tokio::test]
async fn bad_input_is_refused_in_one_line() {
    let etcd = TestEtcd::start().await;
    let before = revision(&etcd).await;
    for (args, why, code) in [
        (
            &["put", "--clients", "0"][..],
            "0 is not in 1..=10000",
            USAGE,
        ),
        (&["put", "--conns", "0"], "0 is not in 1..=1000", USAGE),
        (&["put", "--total", "0"], "0 is not in 1..=100000000", USAGE),
        (&["put", "--clients", "-1"], "-1 is not in 1..=10000", USAGE),
        (
            &["range", "k", "--consistency", "x"],
            "possible values: l, s",
            USAGE,
        ),
        (
            &["put", "--clients", "2", "--conns", "3"],
            "--conns 3 is more than --clients 2",
            1,
        ),
        (
            &["put", "--key-size", "1", "--key-space-size", "11"],
            "room for 10^1 keys",
            1,
        ),
        (&["--clients", "4"], "--clients is for a subcommand", USAGE),
    ] {
        let out = assert_refused(BENCH, &etcd.endpoint(), args, why).await;
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:#?}");
    }
    assert_eq!(revision(&etcd).await, before, "nothing was written");
}

/// 10000 puts of 1000 bytes in one transaction: about 10 MB in one request.
const TEN_MB_TXN: [&str; 7] = [
    "txn-put",
    "--txn-ops",
    "10000",
    "--val-size",
    "1000",
    "--total",
    "10000",
];

/// Issue 15: 10000 puts of 1000 bytes in one transaction were sent, and etcd's refusal came back as raw
/// gRPC text ("grpc: received message larger than max (10260000 vs. 2097152)").
#[tokio::test]
async fn a_transaction_over_etcds_request_limit_is_refused_before_sending() {
    let etcd = TestEtcd::start().await;
    let before = revision(&etcd).await;
    let why = "one transaction of 10000 puts of 15-byte keys and 1000-byte values is 10260000 bytes, over \
               the 1572864 bytes etcd accepts in one request (its --max-request-bytes, 1.5 MiB by default): \
               lower --txn-ops or --val-size";
    let out = assert_refused(BENCH, &etcd.endpoint(), &TEN_MB_TXN, why).await;
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(
        !out.stdout.contains("bench txn-put:"),
        "refused before starting: {out:#?}"
    );
    assert_eq!(revision(&etcd).await, before, "nothing was written");
}

/// The same transaction sent anyway (as to an etcd with a higher limit): etcd's gRPC server refuses it,
/// and the error says so in plain words instead of gRPC's.
#[tokio::test]
async fn a_request_over_etcds_grpc_limit_is_explained_in_one_line() {
    let etcd = TestEtcd::start().await;
    let args = [&TEN_MB_TXN[..], &["--max-request-bytes", "100000000"]].concat();
    let why = "error: the request is too large (10260000 bytes, over etcd's limit of 2097152): etcd refuses \
               requests over --max-request-bytes (1.5 MiB by default, plus 0.5 MiB for gRPC): send less in \
               one request";
    let out = assert_refused(BENCH, &etcd.endpoint(), &args, why).await;
    assert!(!out.stderr.contains("grpc"), "{out:#?}");
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "").await.is_empty(), "{out:#?}");
}

/// Issue 15: `bench --endpoints E put ...`, the order of etcd's Go tool, was refused ("cannot be used
/// with"): the shared flags worked only after the subcommand. Here ETCD_ENDPOINTS names a dead port, so
/// each run works only if its --endpoints, on either side, is the one used.
#[tokio::test]
async fn the_shared_flags_go_before_or_after_the_subcommand() {
    let etcd = TestEtcd::start().await;
    let live = etcd.endpoint();
    let dead = format!("127.0.0.1:{}", free_port());
    for (args, says) in [
        (
            vec![
                "--endpoints", &live, "--dial-timeout", "5", "--clients", "4", "--conns", "2",
                "--prefix", "/go-order/", "put", "--total", "20",
            ],
            "bench put: 20 puts, 8-byte values, 1 key(s) under /go-order/, 4 client(s) over 2 connection(s)",
        ),
        (
            vec!["put", "--total", "20", "--endpoints", &live, "--clients", "4"],
            "bench put: 20 puts, 8-byte values, 1 key(s) under /bench/, 4 client(s) over 1 connection(s)",
        ),
        (
            vec!["--endpoints", &live, "--clients", "2", "range", "k", "--total", "10"],
            "bench range: 10 linearizable reads of k, 2 client(s) over 1 connection(s)",
        ),
    ] {
        let out = Bin::run(BENCH, &dead, &args, LIMIT).await;
        assert!(out.status.success(), "{args:?}: {out:#?}");
        assert!(out.stdout.contains(says), "{args:?}: {out:#?}");
    }
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "").await.is_empty());
}

#[tokio::test]
async fn dead_endpoint_fails_fast_with_one_clear_line() {
    assert_fails_fast_on_dead_endpoint(BENCH, &[]).await;
    // A subcommand takes its own connection flags.
    let dead = format!("127.0.0.1:{}", free_port());
    let args = [
        "put",
        "--endpoints",
        &dead,
        "--dial-timeout",
        "1",
        "--total",
        "10",
    ];
    let out = Bin::run(BENCH, &dead, &args, LIMIT).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains(&dead) && out.stderr.contains("scripts/etcd.sh up"),
        "{out:#?}"
    );
}

#[tokio::test]
async fn sigint_stops_a_put_run_and_deletes_its_keys() {
    let etcd = TestEtcd::start().await;
    let args = [
        "put",
        "--total",
        "100000000",
        "--clients",
        "8",
        "--sequential-keys",
        "--key-space-size",
        "1000",
    ];
    let mut bin = Bin::spawn(BENCH, &etcd.endpoint(), &args);
    bin.line_containing("bench put:", LIMIT).await;
    let mut client = etcd.client().await;
    test_etcd::eventually("the run writes keys", LIMIT, || {
        let mut client = client.clone();
        async move { (!keys_under(&mut client, "/bench/").await.is_empty()).then_some(()) }
    })
    .await;
    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains("Ctrl-C: stopping and cleaning up"),
        "{out:#?}"
    );
    assert!(keys_under(&mut client, "/bench/").await.is_empty());
}

#[tokio::test]
async fn sigterm_stops_lease_keepalive_and_revokes_its_leases() {
    let etcd = TestEtcd::start().await;
    let args = ["lease-keepalive", "--total", "100000000", "--clients", "4"];
    let mut bin = Bin::spawn(BENCH, &etcd.endpoint(), &args);
    bin.line_containing("bench lease-keepalive:", LIMIT).await;
    let mut client = etcd.client().await;
    assert_eq!(lease_ids(&mut client).await.len(), 4);
    bin.signal(Signal::SIGTERM);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains("SIGTERM: stopping and cleaning up"),
        "{out:#?}"
    );
    assert!(lease_ids(&mut client).await.is_empty(), "{out:#?}");
}
