//! The real `lease` binary against an etcd that stalls (frozen with SIGSTOP: it accepts connections but
//! never answers) and against another client that overwrites its key.

use std::time::{Duration, Instant};

use test_etcd::{
    assert_clean_failure, assert_ctrl_c_while_connecting_stops_at_once, eventually, get_value,
    lease_exists, lease_id_in, lease_ids, lease_of, Bin, Signal, TestEtcd,
};

const LEASE: &str = env!("CARGO_BIN_EXE_lease");
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn lease_rides_out_a_freeze_shorter_than_its_ttl() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(
        LEASE,
        &etcd.endpoint(),
        &["--ttl", "5", "--dial-timeout", "1"],
    );
    let id = lease_id_in(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("left of 5s", LIMIT).await;

    // 2.5 s of silence, well inside the 5 s TTL: the countdown's questions go unanswered.
    etcd.freeze();
    let frozen_at = tokio::time::Instant::now();
    let stalled = bin
        .line_containing("etcd does not answer", Duration::from_millis(2500))
        .await;
    assert!(stalled.contains("waiting for it"), "{stalled}");
    tokio::time::sleep_until(frozen_at + Duration::from_millis(2500)).await;
    etcd.thaw();
    assert_eq!(
        lease_of(&mut client, "name").await,
        Some(id),
        "the lease and its key outlived the freeze"
    );

    // The program is still there, hears etcd again, and sees the expiry as usual.
    bin.line_containing("etcd answers again", LIMIT).await;
    let expired = bin.line_containing("4. ", LIMIT).await;
    assert!(expired.contains("name expired after"), "{expired}");
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(!out.stderr.contains("error"), "{out:#?}");
    assert_eq!(get_value(&mut client, "name").await, None);
    assert!(!lease_exists(&mut client, id).await);
}

#[tokio::test]
async fn revoke_against_a_frozen_etcd_is_bounded_by_the_dial_timeout() {
    let etcd = TestEtcd::start().await;
    let mut bin = Bin::spawn(
        LEASE,
        &etcd.endpoint(),
        &["--ttl", "5", "--dial-timeout", "2"],
    );
    let id = lease_id_in(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("3. watching", LIMIT).await;

    etcd.freeze();
    bin.signal(Signal::SIGINT);
    let signalled = Instant::now();
    let out = bin.finish(LIMIT).await;
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(2 + 2), "took {took:?}: {out:#?}");
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains("etcd did not answer within 2s")
            && out.stderr.contains("name goes when its TTL of 5s runs out"),
        "{}",
        out.stderr
    );

    // Nobody renews the lease, so etcd ends it on its own once it runs again.
    etcd.thaw();
    let mut client = etcd.client().await;
    eventually("the lease to expire", Duration::from_secs(5 + 2), || {
        let mut client = client.clone();
        async move { (!lease_exists(&mut client, id).await).then_some(()) }
    })
    .await;
    assert_eq!(get_value(&mut client, "name").await, None);
}

#[tokio::test]
async fn ctrl_c_while_connecting_stops_at_once() {
    let etcd = TestEtcd::start().await;
    assert_ctrl_c_while_connecting_stops_at_once(
        &etcd,
        LEASE,
        &[],
        "Ctrl-C while connecting: stopped; nothing was created in etcd",
    )
    .await;
    let mut client = etcd.client().await;
    assert!(lease_ids(&mut client).await.is_empty(), "no lease granted");
    assert_eq!(get_value(&mut client, "name").await, None);
}

#[tokio::test]
async fn lease_does_not_claim_a_delete_after_an_overwrite() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(LEASE, &etcd.endpoint(), &["--ttl", "60"]);
    let id = lease_id_in(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("3. watching", LIMIT).await;

    client
        .put("name", "mine now", None)
        .await
        .expect("put works");
    let out = bin.finish(LIMIT).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains(&format!(
            "revoked lease {id:016x}; name was overwritten by another client and is no longer on it, so it stays"
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("deleted name"), "{}", out.stderr);
    assert!(!lease_exists(&mut client, id).await);
    assert_eq!(
        get_value(&mut client, "name").await.as_deref(),
        Some("mine now"),
        "what the program said: the key stays"
    );
}
