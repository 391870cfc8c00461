//! The README's transcript is what `cargo run -p txn` really prints: run it and compare, line by line.

use std::time::Duration;

use test_etcd::{keys_under, Bin, TestEtcd, Transcript};

const TXN: &str = env!("CARGO_BIN_EXE_txn");

#[tokio::test]
async fn readme_transcript_matches_the_default_run() {
    let transcript =
        Transcript::from_readme(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"), "txn");
    let etcd = TestEtcd::start().await;
    let out = Bin::run(
        TXN,
        &etcd.endpoint(),
        &transcript.arg_refs(),
        Duration::from_secs(60),
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    transcript.assert_matches(&out.stdout, &etcd.endpoint());

    // "nothing this run wrote is left under /txn-demo/": and nothing else was written anywhere.
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/txn-demo/").await.is_empty());
    assert!(keys_under(&mut client, "").await.is_empty(), "no key left");
}
