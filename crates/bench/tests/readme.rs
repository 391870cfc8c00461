//! The README's transcript is what `cargo run -p bench` really prints: run it and compare, line by line.

use std::time::Duration;

use test_etcd::{keys_under, Bin, TestEtcd, Transcript};

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

#[tokio::test]
async fn readme_transcript_matches_the_default_run() {
    let transcript =
        Transcript::from_readme(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"), "bench");
    let etcd = TestEtcd::start().await;
    let out = Bin::run(
        BENCH,
        &etcd.endpoint(),
        &transcript.arg_refs(),
        Duration::from_secs(60),
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    transcript.assert_matches(&out.stdout, &etcd.endpoint());

    // What the README says the run leaves behind: nothing under /bench/.
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/bench/").await.is_empty());
}
