//! The README's transcript is what the default run really prints.

use std::time::Duration;

use test_etcd::{keys_under, lease_ids, Bin, TestEtcd, Transcript};

#[tokio::test]
async fn the_readme_shows_what_the_default_run_prints() {
    let etcd = TestEtcd::start().await;
    let transcript = Transcript::from_readme(
        concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"),
        "election",
    );
    let out = Bin::run(
        env!("CARGO_BIN_EXE_election"),
        &etcd.endpoint(),
        &transcript.arg_refs(),
        Duration::from_secs(30),
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    transcript.assert_matches(&out.stdout, &etcd.endpoint());

    // "nothing is left under /election/": no candidate key, no lease (revoked, or expired in step 8).
    let mut client = etcd.client().await;
    assert_eq!(
        keys_under(&mut client, "/election").await,
        Vec::<String>::new()
    );
    assert_eq!(
        lease_ids(&mut client).await,
        Vec::<i64>::new(),
        "every lease revoked or expired"
    );
}
