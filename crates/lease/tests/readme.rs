//! The README's transcript is the program's real output: the default run, against a throwaway etcd.
//! It waits for the whole default TTL (20 s), as a reader's run does.

use std::time::Duration;

use test_etcd::{get_value, lease_ids, Bin, TestEtcd, Transcript};

#[tokio::test]
async fn the_readme_shows_what_the_default_run_prints() {
    let etcd = TestEtcd::start().await;
    let transcript =
        Transcript::from_readme(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"), "lease");
    let bin = Bin::spawn(
        env!("CARGO_BIN_EXE_lease"),
        &etcd.endpoint(),
        &transcript.arg_refs(),
    );
    // The default TTL of 20 s, plus etcd's expiry check and a busy 2-core machine.
    let out = bin.finish(Duration::from_secs(45)).await;
    assert!(out.status.success(), "{out:#?}");
    transcript.assert_matches(&out.stdout, &etcd.endpoint());

    // What the run left: nothing, since the lease expired and took the key with it.
    let mut client = etcd.client().await;
    assert_eq!(get_value(&mut client, "name").await, None);
    assert!(lease_ids(&mut client).await.is_empty(), "the lease is gone");
}
