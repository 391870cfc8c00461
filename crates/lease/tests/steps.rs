//! `lease::deleted_in`, in-process, against a throwaway etcd, read from a `ResumingWatch` as `src/main.rs`
//! reads it. The setup makes the same etcd-client calls as `src/main.rs`: grant, put with the lease, watch
//! from the revision after the put.

use std::time::Duration;

use etcd_client::{Client, PutOptions};
use recipes::resuming_watch::{Delivery, ResumingWatch};
use test_etcd::{lease_exists, lease_of, TestEtcd};

const LIMIT: Duration = Duration::from_secs(10);

/// Grants a lease of 60 s and puts `keys` on it; returns the lease ID and the revision of the last put.
async fn leased(client: &mut Client, keys: &[&str]) -> (i64, i64) {
    let lease_id = client.lease_grant(60, None).await.unwrap().id();
    let mut revision = 0;
    for key in keys {
        let put = client
            .put(*key, "1", Some(PutOptions::new().with_lease(lease_id)))
            .await
            .unwrap();
        revision = put.header().unwrap().revision();
    }
    (lease_id, revision)
}

/// Reads `watch` with `lease::deleted_in` until it finds the delete, and returns the delete's revision.
async fn wait_deleted(
    client: &Client,
    watch: &mut ResumingWatch,
    lease_id: i64,
) -> anyhow::Result<i64> {
    let broke = |_, e: &anyhow::Error, _| panic!("the watch broke against a healthy etcd: {e}");
    loop {
        let delivered = tokio::time::timeout(LIMIT, watch.next(client, broke))
            .await
            .expect("the watch answers in time")?;
        let Delivery::Events(resp) = delivered else {
            continue;
        };
        if let Some(revision) = lease::deleted_in(resp.events(), lease_id)? {
            watch.advance(&resp);
            let next = watch.next_revision().expect("the watch is open");
            assert_eq!(next, revision + 1, "next_revision moves past the delete");
            return Ok(revision);
        }
    }
}

/// A watch of `key` from `revision`, open (confirmed by etcd) when this returns.
async fn watch_from(client: &Client, key: &str, revision: i64) -> ResumingWatch {
    let mut watch = ResumingWatch::new(key, false, Some(revision));
    let broke = |_, e: &anyhow::Error, _| panic!("the watch broke against a healthy etcd: {e}");
    tokio::time::timeout(LIMIT, watch.next(client, broke))
        .await
        .expect("the watch opens in time")
        .unwrap();
    watch
}

#[tokio::test]
async fn a_revoke_ends_the_wait_at_the_delete_and_takes_every_key_of_the_lease() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (lease_id, put) = leased(&mut client, &["/t/a", "/t/b"]).await;
    assert_eq!(lease_of(&mut client, "/t/a").await, Some(lease_id));
    let mut watch = watch_from(&client, "/t/a", put + 1).await;

    client.lease_revoke(lease_id).await.unwrap();
    let deleted_at = wait_deleted(&client, &mut watch, lease_id).await.unwrap();

    assert_eq!(deleted_at, put + 1, "the revoke was the next write");
    assert_eq!(lease_of(&mut client, "/t/a").await, None);
    assert_eq!(
        lease_of(&mut client, "/t/b").await,
        None,
        "both keys go at once"
    );
    assert!(!lease_exists(&mut client, lease_id).await);
}

#[tokio::test]
async fn a_watch_started_after_the_put_revision_still_sees_a_delete_that_came_first() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (lease_id, put) = leased(&mut client, &["/t/a"]).await;
    // The key is already gone when the watch starts: starting at put + 1 replays the delete.
    client.lease_revoke(lease_id).await.unwrap();

    let mut watch = watch_from(&client, "/t/a", put + 1).await;
    let deleted_at = wait_deleted(&client, &mut watch, lease_id).await.unwrap();
    assert_eq!(deleted_at, put + 1);
}

#[tokio::test]
async fn a_rewrite_on_the_same_lease_does_not_end_the_wait() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (lease_id, put) = leased(&mut client, &["/t/a"]).await;
    let mut watch = watch_from(&client, "/t/a", put + 1).await;

    client
        .put("/t/a", "2", Some(PutOptions::new().with_lease(lease_id)))
        .await
        .unwrap();
    let deleted = client.delete("/t/a", None).await.unwrap();
    let deleted_at = wait_deleted(&client, &mut watch, lease_id).await.unwrap();
    assert_eq!(
        deleted_at,
        deleted.header().unwrap().revision(),
        "the wait skipped the rewrite and ended at the delete"
    );
    assert!(
        lease_exists(&mut client, lease_id).await,
        "a delete by hand leaves the lease: main.rs asks about it to tell this case apart"
    );
}

#[tokio::test]
async fn overwriting_the_key_without_the_lease_ends_the_wait_with_an_error() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (lease_id, put) = leased(&mut client, &["/t/a"]).await;
    let mut watch = watch_from(&client, "/t/a", put + 1).await;
    client.put("/t/a", "mine now", None).await.unwrap();

    let err = wait_deleted(&client, &mut watch, lease_id)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("overwrote /t/a without lease {lease_id:016x}")),
        "{err}"
    );
}
