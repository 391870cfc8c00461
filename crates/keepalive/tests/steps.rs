//! The keepalive step functions, in-process, against a throwaway etcd.

use std::time::Duration;

use keepalive::{KeptLease, Renewal};
use test_etcd::TestEtcd;

const LIMIT: Duration = Duration::from_secs(10);

/// Remaining seconds of a lease as etcd reports them (-1 once it is gone).
async fn remaining(client: &mut etcd_client::Client, id: i64) -> i64 {
    client.lease_time_to_live(id, None).await.unwrap().ttl()
}

#[tokio::test]
async fn a_renewal_resets_the_lease_to_its_full_ttl() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (id, ttl) = keepalive::grant(&mut client, 3).await.unwrap();
    keepalive::put_with_lease(&mut client, "/t/a", "1", id)
        .await
        .unwrap();
    let mut lease = KeptLease::start(&mut client, id, ttl).await.unwrap();
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
}

#[tokio::test]
async fn a_revoked_lease_is_reported_gone_by_the_next_renewal() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (id, ttl) = keepalive::grant(&mut client, 3).await.unwrap();
    let mut lease = KeptLease::start(&mut client, id, ttl).await.unwrap();

    keepalive::revoke(&mut client, id, LIMIT).await.unwrap();
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
    let (id, ttl) = keepalive::grant(&mut client, 3).await.unwrap();
    let mut lease = KeptLease::start(&mut client, id, ttl).await.unwrap();
    keepalive::revoke(&mut client, id, LIMIT).await.unwrap();

    let err = tokio::time::timeout(LIMIT, lease.reopen(&mut client))
        .await
        .expect("reopen gives up at once on a lease that is gone")
        .unwrap_err();
    assert!(err.to_string().contains("is gone"), "{err:#}");
    assert!(KeptLease::start(&mut client, id, ttl).await.is_err());
}

#[tokio::test]
async fn reopening_a_live_lease_gives_a_working_stream_and_renews_it() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (id, ttl) = keepalive::grant(&mut client, 3).await.unwrap();
    let mut lease = KeptLease::start(&mut client, id, ttl).await.unwrap();
    let before = lease.deadline();

    lease.reopen(&mut client).await.unwrap();
    assert!(lease.deadline() > before, "re-opening renews the lease");
    let renewal = tokio::time::timeout(LIMIT, lease.renew_when_due())
        .await
        .expect("the new stream answers")
        .unwrap();
    assert_eq!(renewal, Renewal::Alive { ttl });
}

#[test]
fn renewals_come_every_third_of_the_ttl() {
    assert_eq!(keepalive::renew_every(6), Duration::from_secs(2));
    assert_eq!(keepalive::renew_every(3), Duration::from_secs(1));
}
