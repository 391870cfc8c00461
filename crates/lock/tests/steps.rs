//! The lock step functions, in-process, against a throwaway etcd.

use std::time::Duration;

use etcd_client::Client;
use lock::{LockKey, Session, TryOutcome};
use test_etcd::{eventually, get_value, keys_under, lease_ids, TestEtcd};

const LIMIT: Duration = Duration::from_secs(10);

async fn create_revision_of(client: &mut Client, key: &str) -> Option<i64> {
    let resp = client.get(key, None).await.unwrap();
    resp.kvs().first().map(|kv| kv.create_revision())
}

#[tokio::test]
async fn lock_key_is_name_slash_lease_hex_and_its_revision_is_the_fencing_token() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let session = Session::start(&client, 10).await.unwrap();

    let held = lock::acquire(&mut client, "/l", session.lease_id())
        .await
        .unwrap();
    assert_eq!(held.key, format!("/l/{:x}", session.lease_id()));
    assert_eq!(held.key, lock::lock_key("/l", session.lease_id()));
    assert_eq!(
        create_revision_of(&mut client, &held.key).await,
        Some(held.revision)
    );
    let resp = client.get(held.key.as_str(), None).await.unwrap();
    assert_eq!(
        resp.kvs()[0].lease(),
        session.lease_id(),
        "the key lives on the session's lease"
    );

    lock::release(&mut client, &held).await.unwrap();
    assert!(keys_under(&mut client, "/l/").await.is_empty());

    let id = session.lease_id();
    session.close().await.unwrap();
    assert!(!lease_ids(&mut client).await.contains(&id));
}

#[tokio::test]
async fn second_session_waits_in_the_queue_until_the_first_releases() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let one = Session::start(&client, 10).await.unwrap();
    let two = Session::start(&client, 10).await.unwrap();

    let held1 = lock::acquire(&mut client, "/l", one.lease_id())
        .await
        .unwrap();
    let mut client2 = client.clone();
    let lease2 = two.lease_id();
    let waiting =
        tokio::spawn(async move { lock::acquire(&mut client2, "/l", lease2).await.unwrap() });

    let key2 = lock::lock_key("/l", lease2);
    let queue = lock::wait_until_queued(&mut client, "/l", &key2, LIMIT)
        .await
        .unwrap();
    let keys: Vec<&str> = queue.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, [held1.key.as_str(), key2.as_str()], "holder first");
    assert!(!waiting.is_finished(), "session 2 must wait while 1 holds");

    lock::release(&mut client, &held1).await.unwrap();
    let held2 = tokio::time::timeout(LIMIT, waiting)
        .await
        .expect("session 2 gets the lock once session 1 released it")
        .unwrap();
    assert_eq!(held2.key, key2);
    assert!(
        held2.revision > held1.revision,
        "the next holder's token is higher"
    );

    one.close().await.unwrap();
    two.close().await.unwrap();
    assert!(keys_under(&mut client, "/l/").await.is_empty());
}

#[tokio::test]
async fn try_acquire_takes_a_free_lock_and_withdraws_from_a_taken_one() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let one = Session::start(&client, 10).await.unwrap();
    let two = Session::start(&client, 10).await.unwrap();

    let TryOutcome::Acquired(held1) = lock::try_acquire(&mut client, "/l", one.lease_id())
        .await
        .unwrap()
    else {
        panic!("a free lock is acquired");
    };
    assert_eq!(held1.key, lock::lock_key("/l", one.lease_id()));
    assert_eq!(
        create_revision_of(&mut client, &held1.key).await,
        Some(held1.revision)
    );

    let outcome = lock::try_acquire(&mut client, "/l", two.lease_id())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TryOutcome::Taken {
            holder: held1.clone()
        }
    );
    assert_eq!(
        keys_under(&mut client, "/l/").await,
        [held1.key.as_str()],
        "the loser left no key in the queue"
    );

    // Same key scheme as the lock RPC: a blocking acquire from session 1 sees it already holds the lock.
    let again = lock::acquire(&mut client, "/l", one.lease_id())
        .await
        .unwrap();
    assert_eq!(again, held1);

    lock::release(&mut client, &held1).await.unwrap();
    let outcome = lock::try_acquire(&mut client, "/l", two.lease_id())
        .await
        .unwrap();
    assert!(
        matches!(&outcome, TryOutcome::Acquired(k) if k.key == lock::lock_key("/l", two.lease_id())),
        "{outcome:?}"
    );

    one.close().await.unwrap();
    two.close().await.unwrap();
}

#[tokio::test]
async fn fenced_write_rejects_a_holder_whose_lease_expired() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;

    // A holder that stalls: its lease is never renewed, as if the process were frozen.
    let stalled_lease = client.lease_grant(2, None).await.unwrap().id();
    let stalled = lock::acquire(&mut client, "/l", stalled_lease)
        .await
        .unwrap();
    assert!(
        lock::put_if_holder(&mut client, &stalled, "/res", "one")
            .await
            .unwrap(),
        "the holder may write"
    );
    assert!(
        lock::put_if_holder(&mut client, &stalled, "/res", "two")
            .await
            .unwrap(),
        "and write again while it holds"
    );

    // The lease runs out; a healthy session takes over.
    let fresh = Session::start(&client, 10).await.unwrap();
    let mut client2 = client.clone();
    let lease = fresh.lease_id();
    let next = tokio::time::timeout(LIMIT, async move {
        lock::acquire(&mut client2, "/l", lease).await.unwrap()
    })
    .await
    .expect("the lock is free once the stalled lease expired");
    assert!(next.revision > stalled.revision);
    assert!(
        lock::put_if_holder(&mut client, &next, "/res", "new holder")
            .await
            .unwrap()
    );

    // The stalled holder wakes up and writes with its old token: refused, and nothing changed.
    assert!(
        !lock::put_if_holder(&mut client, &stalled, "/res", "stale")
            .await
            .unwrap(),
        "a stale token must be rejected"
    );
    assert_eq!(
        get_value(&mut client, "/res").await.as_deref(),
        Some("new holder")
    );

    fresh.close().await.unwrap();
    // Even after the new holder is gone, the old token stays refused: its key never comes back.
    assert!(!lock::put_if_holder(&mut client, &stalled, "/res", "stale")
        .await
        .unwrap());
}

#[tokio::test]
async fn a_lock_without_a_lease_gets_an_unrenewed_server_lease() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let before = lease_ids(&mut client).await;

    let orphan = lock::lock_without_lease(&mut client, "/l").await.unwrap();
    let lease = lock::lease_behind(&mut client, &orphan.key).await.unwrap();
    assert!(!before.contains(&lease.id), "etcd made a new lease");
    assert_eq!(lease.granted_ttl, lock::SERVER_SESSION_TTL);
    assert!(lease.remaining_ttl <= lease.granted_ttl);
    assert_eq!(orphan.key, lock::lock_key("/l", lease.id));

    // Nobody renews it: the remaining TTL only goes down.
    let dropped = eventually("the server lease's TTL to go down", LIMIT, || {
        let mut client = client.clone();
        let key = orphan.key.clone();
        async move {
            let now = lock::lease_behind(&mut client, &key).await.unwrap();
            (now.remaining_ttl < lease.remaining_ttl).then_some(now.remaining_ttl)
        }
    })
    .await;
    assert!(dropped < lease.granted_ttl);

    client.lease_revoke(lease.id).await.unwrap();
    assert!(keys_under(&mut client, "/l/").await.is_empty());
}

#[tokio::test]
async fn a_session_outlives_its_ttl_and_closing_it_frees_the_lock() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut session = Session::start(&client, 2).await.unwrap();
    let held = lock::acquire(&mut client, "/l", session.lease_id())
        .await
        .unwrap();

    // Watch the lease for twice its TTL: without renewals it would expire half-way through.
    let until = tokio::time::Instant::now() + Duration::from_secs(2 * session.ttl() as u64);
    while tokio::time::Instant::now() < until {
        let ttl = client
            .lease_time_to_live(session.lease_id(), None)
            .await
            .unwrap()
            .ttl();
        assert!(
            ttl > 0,
            "the session's lease expired although it is renewed"
        );
        tokio::select! {
            why = session.lost() => panic!("session lost: {why}"),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    assert_eq!(
        keys_under(&mut client, "/l/").await,
        [held.key.as_str()],
        "still holding"
    );

    let other = Session::start(&client, 10).await.unwrap();
    assert!(matches!(
        lock::try_acquire(&mut client, "/l", other.lease_id()).await.unwrap(),
        TryOutcome::Taken { holder: LockKey { ref key, .. } } if *key == held.key
    ));
    session.close().await.unwrap();
    assert!(matches!(
        lock::try_acquire(&mut client, "/l", other.lease_id())
            .await
            .unwrap(),
        TryOutcome::Acquired(_)
    ));
    other.close().await.unwrap();
    assert!(lease_ids(&mut client).await.is_empty());
}
