//! The README's transcript is the program's real output: the default run against a throwaway etcd,
//! stopped as the README says, with Ctrl-C (SIGINT) after two renewals.

use std::time::Duration;

use test_etcd::{get_value, lease_ids, lease_of, Bin, Signal, TestEtcd, Transcript};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_readme_shows_what_the_default_run_prints() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let transcript = Transcript::from_readme(
        concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"),
        "keepalive",
    );
    let mut bin = Bin::spawn(
        env!("CARGO_BIN_EXE_keepalive"),
        &etcd.endpoint(),
        &transcript.arg_refs(),
    );
    bin.line_containing("ttl: 5 (renewal 1:", LIMIT).await;
    bin.line_containing("ttl: 5 (renewal 2:", LIMIT).await;
    let leases = lease_ids(&mut client).await;
    assert_eq!(leases.len(), 1, "one lease: {leases:?}");
    assert_eq!(
        lease_of(&mut client, "name").await,
        Some(leases[0]),
        "while it runs, name is on the program's lease"
    );

    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    transcript.assert_matches(&out.stdout, &etcd.endpoint());

    // What the run left: nothing, since Ctrl-C revoked the lease and the key went with it.
    assert_eq!(get_value(&mut client, "name").await, None);
    assert!(
        lease_ids(&mut client).await.is_empty(),
        "the lease is revoked"
    );
}
