//! `recipes::kept_lease::KeptLease`, in-process, against a throwaway etcd. The setup makes the same
//! etcd-client calls as `src/main.rs`: grant, put with the lease, open the keep-alive stream and hand over
//! its ends.

use std::time::Duration;

use etcd_client::{Client, PutOptions};
use recipes::kept_lease::{KeptLease, Renewal};
use test_etcd::{lease_exists, lease_of, TestEtcd};

const LIMIT: Duration = Duration::from_secs(10);

/// Remaining seconds of a lease as etcd reports them (-1 once it is gone).
async fn remaining(client: &mut Client, id: i64) -> i64 {
    client.lease_time_to_live(id, None).await.unwrap().ttl()
}

/// Grants a lease of `ttl` seconds and returns it kept, as main.rs does.
async fn kept(client: &mut Client, ttl: i64) -> KeptLease {
    let granted = client.lease_grant(ttl, None).await.unwrap();
    let (keeper, stream) = client.lease_keep_alive(granted.id()).await.unwrap();
    KeptLease::new(granted.id(), granted.ttl(), keeper, stream)
}

#[tokio::test]
async fn a_renewal_resets_the_lease_to_its_full_ttl() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut lease = kept(&mut client, 3).await;
    let (id, ttl) = (lease.id, lease.ttl);
    client
        .put("/t/a", "1", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    let opened_deadline = lease.deadline();

    let renewal = tokio::time::timeout(LIMIT, lease.renew_when_due())
        .await
        .expect("a renewal is due after TTL/3")
        .unwrap();
    assert_eq!(renewal, Renewal::Alive { ttl });
    assert!(
        lease.deadline() > opened_deadline,
        "the deadline moves with each renewal"
    );
    assert!(remaining(&mut client, id).await > 0);
    assert_eq!(lease_of(&mut client, "/t/a").await, Some(id));
}

#[tokio::test]
async fn renewals_come_every_third_of_the_granted_ttl() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let lease = kept(&mut client, 6).await;
    assert_eq!(lease.ttl, 6);
    assert_eq!(lease.renew_every(), Duration::from_secs(2));
    let left = lease
        .deadline()
        .saturating_duration_since(std::time::Instant::now());
    assert!(
        left > Duration::from_secs(5) && left <= Duration::from_secs(6),
        "the stream was just opened, which renewed the lease: {left:?} left"
    );
}

#[tokio::test]
async fn a_revoked_lease_is_reported_gone_by_the_next_renewal() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut lease = kept(&mut client, 3).await;

    client.lease_revoke(lease.id).await.unwrap();
    let renewal = tokio::time::timeout(LIMIT, lease.renew_when_due())
        .await
        .expect("the renewal is answered")
        .unwrap();
    assert_eq!(renewal, Renewal::Gone);
}

#[tokio::test]
async fn a_lease_that_is_gone_cannot_be_kept_or_reopened() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut lease = kept(&mut client, 3).await;
    let id = lease.id;
    client.lease_revoke(id).await.unwrap();
    assert!(!lease_exists(&mut client, id).await);

    let err = tokio::time::timeout(LIMIT, lease.reopen(&mut client))
        .await
        .expect("reopen gives up at once on a lease that is gone")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("lease {id:016x} is gone")),
        "{err:#}"
    );
    assert!(
        client.lease_keep_alive(id).await.is_err(),
        "opening a stream fails too, so KeptLease::new is never reached"
    );
}

#[tokio::test]
async fn reopening_a_live_lease_gives_a_working_stream_and_renews_it() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut lease = kept(&mut client, 3).await;
    let before = lease.deadline();

    lease.reopen(&mut client).await.unwrap();
    assert!(lease.deadline() > before, "re-opening renews the lease");
    let renewal = tokio::time::timeout(LIMIT, lease.renew_when_due())
        .await
        .expect("the new stream answers")
        .unwrap();
    assert_eq!(renewal, Renewal::Alive { ttl: lease.ttl });
}

#[tokio::test]
async fn reopen_gives_up_at_the_deadline_while_etcd_is_down() {
    let mut etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut lease = kept(&mut client, 3).await;
    let deadline = lease.deadline();

    etcd.stop();
    let err = tokio::time::timeout(LIMIT, lease.reopen(&mut client))
        .await
        .expect("reopen is bounded by the lease's deadline")
        .unwrap_err();
    assert!(
        std::time::Instant::now() >= deadline,
        "gave up before the lease could have ended: {err:#}"
    );
    assert!(
        err.to_string().contains(&format!(
            "could not renew lease {:016x} within its TTL",
            lease.id
        )),
        "{err:#}"
    );
}
