//! The real `txn` binary, end to end, against a throwaway etcd.

use std::time::Duration;

use test_etcd::{
    assert_clean_failure, assert_fails_fast_on_dead_endpoint, assert_refused, get_value,
    keys_under, put, Bin, Signal, TestEtcd,
};

const TXN: &str = env!("CARGO_BIN_EXE_txn");
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn bad_input_is_refused_without_touching_etcd() {
    let etcd = TestEtcd::start().await;
    for (args, why) in [
        (vec!["--workers", "0"], "0 is not in 1..=100"),
        (vec!["--workers", "-1"], "-1 is not in 1..=100"),
        (vec!["--accounts", "1"], "1 is not in 2..=100"),
        (vec!["--accounts", "101"], "101 is not in 2..=100"),
        (vec!["--transfers", "0"], "0 is not in 1..=100000"),
        (vec!["--demo-prefix", ""], "a key cannot be empty"),
    ] {
        assert_refused(TXN, &etcd.endpoint(), &args, why).await;
    }
    let mut client = etcd.client().await;
    assert!(
        keys_under(&mut client, "").await.is_empty(),
        "nothing was written"
    );
}

#[tokio::test]
async fn dead_endpoint_fails_fast_with_one_clear_line() {
    assert_fails_fast_on_dead_endpoint(TXN, &[]).await;
}

#[tokio::test]
async fn a_demo_prefix_that_holds_keys_is_refused_and_left_untouched() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    put(&mut client, "/txn-demo/greeting", "mine").await;
    put(&mut client, "users-key", "precious").await;
    for prefix in ["/txn-demo/", "/"] {
        let out = assert_refused(
            TXN,
            &etcd.endpoint(),
            &["--demo-prefix", prefix],
            "which this program did not write",
        )
        .await;
        assert!(
            out.stderr.contains("/txn-demo/greeting"),
            "names the keys: {out:#?}"
        );
    }
    assert_eq!(
        keys_under(&mut client, "").await,
        ["/txn-demo/greeting", "users-key"],
        "nothing added"
    );
    assert_eq!(
        get_value(&mut client, "/txn-demo/greeting")
            .await
            .as_deref(),
        Some("mine")
    );
    let got = client.get("/txn-demo/greeting", None).await.unwrap();
    assert_eq!(got.kvs()[0].version(), 1, "never overwritten");
}

#[tokio::test]
async fn fewer_accounts_and_more_workers_still_keep_the_total() {
    let etcd = TestEtcd::start().await;
    let args = [
        "--workers",
        "12",
        "--accounts",
        "2",
        "--transfers",
        "15",
        "--demo-prefix",
        "/bank/",
    ];
    let out = Bin::run(TXN, &etcd.endpoint(), &args, LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout
            .contains("opened /bank/account-1 .. /bank/account-2 with 100 each"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("   180 transfers in "), "{out:#?}");
    assert!(out.stdout.contains("   total: 200, as before"), "{out:#?}");
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "").await.is_empty(), "{out:#?}");
}

/// The most workers `--workers` accepts, on the fewest accounts `--accounts` accepts: every transfer
/// collides with every other. Issue 15: each retry wrote from a value read before its pause, so the
/// longer the pauses grew the surer it was to lose again, and a transfer gave up after 100 lost races;
/// this run (and the README's `--workers 32 --accounts 2`) failed with "too many writers" every time.
#[tokio::test]
async fn the_most_workers_on_the_fewest_accounts_finish_and_keep_the_total() {
    let etcd = TestEtcd::start().await;
    let args = ["--workers", "100", "--accounts", "2", "--transfers", "30"];
    // About 10 s on an idle 2-core machine in a debug build; the limit leaves room for a loaded one.
    let out = Bin::run(TXN, &etcd.endpoint(), &args, Duration::from_secs(240)).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stdout.contains("   3000 transfers in "), "{out:#?}");
    assert!(out.stdout.contains(" conflicts retried\n"), "{out:#?}");
    assert!(out.stdout.contains("   total: 200, as before"), "{out:#?}");
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "").await.is_empty(), "{out:#?}");
}

#[tokio::test]
async fn sigint_and_sigterm_during_the_transfers_keep_the_total_and_delete_what_the_run_created() {
    let etcd = TestEtcd::start().await;
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // Far more transfers than can finish before the signal.
        let mut bin = Bin::spawn(TXN, &etcd.endpoint(), &["--transfers", "100000"]);
        bin.line_containing("opened /txn-demo/account-1", LIMIT)
            .await;
        bin.signal(signal);
        let out = bin.finish(LIMIT).await;
        assert!(out.status.success(), "{signal}: {out:#?}");
        let name = if signal == Signal::SIGINT {
            "Ctrl-C"
        } else {
            "SIGTERM"
        };
        assert!(
            out.stdout
                .contains(&format!("   {name}: stopped the workers after ")),
            "{out:#?}"
        );
        assert!(out.stdout.contains("   total: 500, as before"), "{out:#?}");
        assert!(
            out.stdout
                .contains("4. deleted the 7 keys this run created under /txn-demo/"),
            "{out:#?}"
        );
        let mut client = etcd.client().await;
        assert!(keys_under(&mut client, "").await.is_empty(), "{out:#?}");
    }
}

#[tokio::test]
async fn a_total_changed_by_another_client_is_reported_and_exits_non_zero() {
    let etcd = TestEtcd::start().await;
    let mut bin = Bin::spawn(TXN, &etcd.endpoint(), &[]);
    bin.line_containing("opened /txn-demo/account-1", LIMIT)
        .await;
    // Pause the program while another client adds money to an account, so that this happens during the
    // transfers whatever the machine's speed; the workers then go on from the new balance.
    bin.signal(Signal::SIGSTOP);
    let mut client = etcd.client().await;
    put(&mut client, "/txn-demo/account-1", "1000").await;
    bin.signal(Signal::SIGCONT);

    let out = bin.finish(LIMIT).await;
    assert_clean_failure(&out);
    assert!(out.stderr.contains("error: the total is "), "{out:#?}");
    assert!(
        out.stderr.contains("not 500: money was created or lost"),
        "{out:#?}"
    );
    // The run still deleted what it created: the put changed a value, not a create revision.
    assert!(
        out.stdout
            .contains("4. deleted the 7 keys this run created under /txn-demo/"),
        "{out:#?}"
    );
    assert!(keys_under(&mut client, "").await.is_empty(), "{out:#?}");
}

#[tokio::test]
async fn a_key_created_again_by_another_client_is_not_deleted() {
    let etcd = TestEtcd::start().await;
    let mut bin = Bin::spawn(TXN, &etcd.endpoint(), &[]);
    bin.line_containing("opened /txn-demo/account-1", LIMIT)
        .await;
    // While the program is paused, another client deletes the greeting and writes its own.
    bin.signal(Signal::SIGSTOP);
    let mut client = etcd.client().await;
    client.delete("/txn-demo/greeting", None).await.unwrap();
    put(&mut client, "/txn-demo/greeting", "someone else's").await;
    bin.signal(Signal::SIGCONT);

    let out = bin.finish(LIMIT).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains(
            "left the demo keys under /txn-demo/ in place: /txn-demo/greeting was deleted and created again"
        ),
        "{out:#?}"
    );
    assert_eq!(
        get_value(&mut client, "/txn-demo/greeting")
            .await
            .as_deref(),
        Some("someone else's"),
        "the other client's key survives"
    );
}
