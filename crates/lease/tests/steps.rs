//! The lease step functions, in-process, against a throwaway etcd.

use std::time::Duration;

use test_etcd::{lease_of, TestEtcd};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_key_put_on_a_lease_is_listed_by_it_and_carries_its_id() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;

    let granted = lease::grant(&mut client, 60).await.unwrap();
    assert_eq!(granted.ttl, 60, "a TTL above the minimum is kept as asked");
    lease::put_with_lease(&mut client, "/t/a", "1", granted.id)
        .await
        .unwrap();
    lease::put_with_lease(&mut client, "/t/b", "2", granted.id)
        .await
        .unwrap();

    assert_eq!(lease_of(&mut client, "/t/a").await, Some(granted.id));
    let status = lease::time_to_live(&mut client, granted.id)
        .await
        .unwrap()
        .expect("the lease exists");
    assert_eq!(status.granted, granted.ttl);
    assert!(
        status.remaining > 0 && status.remaining <= granted.ttl,
        "{status:?}"
    );
    let mut keys = status.keys;
    keys.sort();
    assert_eq!(keys, ["/t/a", "/t/b"], "one lease carries both keys");
}

#[tokio::test]
async fn a_tiny_ttl_is_raised_by_the_server() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let granted = lease::grant(&mut client, 1).await.unwrap();
    assert!(granted.ttl > 1, "etcd granted {}s", granted.ttl);
}

#[tokio::test]
async fn revoke_deletes_every_key_and_a_watch_from_the_put_sees_it() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let granted = lease::grant(&mut client, 60).await.unwrap();
    let put = lease::put_with_lease(&mut client, "/t/a", "1", granted.id)
        .await
        .unwrap();
    lease::put_with_lease(&mut client, "/t/b", "2", granted.id)
        .await
        .unwrap();
    let mut watch = lease::watch_key_from(&mut client, "/t/a", put + 1)
        .await
        .unwrap();

    lease::revoke(&mut client, granted.id, LIMIT).await.unwrap();
    let deleted_at = tokio::time::timeout(LIMIT, lease::next_delete(&mut watch, granted.id))
        .await
        .expect("the delete event arrives")
        .unwrap();

    assert!(deleted_at > put, "{deleted_at} after {put}");
    assert_eq!(lease_of(&mut client, "/t/a").await, None);
    assert_eq!(lease_of(&mut client, "/t/b").await, None);
    assert_eq!(
        lease::time_to_live(&mut client, granted.id).await.unwrap(),
        None,
        "a revoked lease is gone"
    );
}

#[tokio::test]
async fn a_watch_started_after_the_put_revision_still_sees_a_delete_that_came_first() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let granted = lease::grant(&mut client, 60).await.unwrap();
    let put = lease::put_with_lease(&mut client, "/t/a", "1", granted.id)
        .await
        .unwrap();
    // The key is already gone when the watch starts: starting at put + 1 replays the delete.
    lease::revoke(&mut client, granted.id, LIMIT).await.unwrap();

    let mut watch = lease::watch_key_from(&mut client, "/t/a", put + 1)
        .await
        .unwrap();
    let deleted_at = tokio::time::timeout(LIMIT, lease::next_delete(&mut watch, granted.id))
        .await
        .expect("the past delete is replayed")
        .unwrap();
    assert_eq!(deleted_at, put + 1, "the revoke was the next write");
}

#[tokio::test]
async fn overwriting_the_key_without_the_lease_ends_the_wait_with_an_error() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let granted = lease::grant(&mut client, 60).await.unwrap();
    let put = lease::put_with_lease(&mut client, "/t/a", "1", granted.id)
        .await
        .unwrap();
    let mut watch = lease::watch_key_from(&mut client, "/t/a", put + 1)
        .await
        .unwrap();
    client.put("/t/a", "mine now", None).await.unwrap();

    let err = tokio::time::timeout(LIMIT, lease::next_delete(&mut watch, granted.id))
        .await
        .expect("the put event arrives")
        .unwrap_err();
    assert!(err.to_string().contains("overwrote /t/a"), "{err}");
}

#[test]
fn lease_ids_print_like_etcdctl() {
    assert_eq!(
        lease::lease_id_hex(0x694d_77aa_9e38_260f),
        "694d77aa9e38260f"
    );
    assert_eq!(lease::lease_id_hex(0x1f), "000000000000001f");
}

#[test]
fn the_countdown_is_printed_between_every_second_and_every_five() {
    assert_eq!(lease::report_every(2), Duration::from_secs(1));
    assert_eq!(lease::report_every(12), Duration::from_secs(3));
    assert_eq!(lease::report_every(3600), Duration::from_secs(5));
}
