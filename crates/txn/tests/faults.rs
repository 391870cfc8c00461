//! The real `txn` binary against an etcd that freezes (SIGSTOP), or a member that is dead from the start.

use std::time::{Duration, Instant};

use test_etcd::{
    assert_clean_failure, assert_ctrl_c_while_connecting_stops_at_once, free_port, keys_under, Bin,
    Signal, TestEtcd,
};

const TXN: &str = env!("CARGO_BIN_EXE_txn");
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn ctrl_c_while_connecting_stops_at_once() {
    let etcd = TestEtcd::start().await;
    assert_ctrl_c_while_connecting_stops_at_once(
        &etcd,
        TXN,
        &[],
        "Ctrl-C: stopped before connecting",
    )
    .await;
    let mut client = etcd.client().await;
    assert!(
        keys_under(&mut client, "").await.is_empty(),
        "nothing written"
    );
}

#[tokio::test]
async fn ctrl_c_against_a_frozen_etcd_is_bounded_by_the_dial_timeout() {
    let etcd = TestEtcd::start().await;
    let dial_timeout = Duration::from_secs(2);
    let mut bin = Bin::spawn(
        TXN,
        &etcd.endpoint(),
        &["--dial-timeout", "2", "--transfers", "100000"],
    );
    bin.line_containing("opened /txn-demo/account-1", LIMIT)
        .await;

    etcd.freeze();
    bin.signal(Signal::SIGINT);
    let signalled = Instant::now();
    let out = bin.finish(LIMIT).await;
    let took = signalled.elapsed();
    etcd.thaw();

    // Reading the balances and the clean-up share one budget of --dial-timeout.
    assert!(
        took < dial_timeout + Duration::from_secs(2),
        "took {took:?}: {out:#?}"
    );
    assert_clean_failure(&out);
    assert!(
        out.stdout.contains("Ctrl-C: stopped the workers after"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("read the balances: etcd did not answer within 2s (--dial-timeout)"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("the keys this run wrote stay under /txn-demo/ (`etcdctl del --prefix /txn-demo/` removes them)"),
        "{out:#?}"
    );
    // What stays is exactly what the run created, as the message says.
    let mut client = etcd.client().await;
    let mut expected = vec!["/txn-demo/counter".to_string(), "/txn-demo/greeting".into()];
    expected.extend((1..=5).map(|i| format!("/txn-demo/account-{i}")));
    expected.sort();
    assert_eq!(keys_under(&mut client, "").await, expected);
}

#[tokio::test]
async fn a_dead_member_in_the_endpoint_list_does_not_break_the_run() {
    let etcd = TestEtcd::start().await;
    let dead = format!("127.0.0.1:{}", free_port());
    let endpoints = format!("{dead},{}", etcd.endpoint());
    let out = Bin::run(TXN, &endpoints, &["--transfers", "20"], LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stderr
            .contains(&format!("note: etcd member {dead} does not answer")),
        "the dead member is named: {out:#?}"
    );
    assert!(out.stdout.contains("   total: 500, as before"), "{out:#?}");
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "").await.is_empty(), "{out:#?}");
}
