//! The README's transcript is what the default run (the demo) really prints.

use std::time::Duration;

use test_etcd::{keys_under, lease_ids, Bin, TestEtcd, Transcript};

#[tokio::test]
async fn the_readme_shows_what_the_default_run_prints() {
    let etcd = TestEtcd::start().await;
    let transcript = Transcript::from_readme(
        concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"),
        "discovery",
    );
    let out = Bin::run(
        env!("CARGO_BIN_EXE_discovery"),
        &etcd.endpoint(),
        &transcript.arg_refs(),
        Duration::from_secs(30),
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    transcript.assert_matches(&out.stdout, &etcd.endpoint());

    // "0 key(s) left under /services/demo/, and both leases are revoked": nothing else either.
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/").await.is_empty());
    assert!(
        lease_ids(&mut client).await.is_empty(),
        "every lease revoked"
    );
}
