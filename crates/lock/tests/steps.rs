//! The items of src/lib.rs (`Session`, `try_acquire`, `put_if_holder`), in-process, against a throwaway
//! etcd, together with the etcd-client calls main.rs makes around them.

use std::time::Duration;

use etcd_client::{Client, LockOptions};
use lock::{LockKey, TryOutcome};
use recipes::kept_lease::Session;
use test_etcd::{eventually, get_value, keys_under, lease_ids, lease_of, TestEtcd};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A lease of `ttl` seconds and a session renewing it, as main.rs starts one.
async fn start_session(client: &mut Client, ttl: i64) -> Session {
    let grant = client.lease_grant(ttl, None).await.unwrap();
    Session::start(client, grant.id(), grant.ttl())
        .await
        .unwrap()
}

/// What main.rs does to take a lock and learn its fencing token: the lock call, then a GET of the key.
async fn lock_on(client: &mut Client, name: &str, lease: i64) -> LockKey {
    let locked = client
        .lock(name, Some(LockOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let key = String::from_utf8_lossy(locked.key()).into_owned();
    let got = client.get(key.as_str(), None).await.unwrap();
    LockKey {
        create_revision: got.kvs()[0].create_revision(),
        key,
    }
}

#[tokio::test]
async fn try_acquire_writes_the_same_key_as_the_lock_rpc_and_withdraws_from_a_taken_lock() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let one = start_session(&mut client, 10).await;
    let two = start_session(&mut client, 10).await;

    let TryOutcome::Acquired(held1) = lock::try_acquire(&mut client, "/l", one.lease_id())
        .await
        .unwrap()
    else {
        panic!("a free lock is acquired");
    };
    // The lock service's key scheme: `<name>/<lease ID in hex without leading zeros>`, on that lease.
    assert_eq!(held1.key, format!("/l/{:x}", one.lease_id()));
    assert_eq!(
        lease_of(&mut client, &held1.key).await,
        Some(one.lease_id())
    );
    let got = client.get(held1.key.as_str(), None).await.unwrap();
    assert_eq!(got.kvs()[0].create_revision(), held1.create_revision);

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

    // Same key as the lock RPC: a blocking lock from session 1 sees that it already holds the lock.
    let again = lock_on(&mut client, "/l", one.lease_id()).await;
    assert_eq!(again, held1);

    client.unlock(held1.key.as_str()).await.unwrap();
    let outcome = lock::try_acquire(&mut client, "/l", two.lease_id())
        .await
        .unwrap();
    assert!(
        matches!(&outcome, TryOutcome::Acquired(k) if k.key == format!("/l/{:x}", two.lease_id())),
        "{outcome:?}"
    );

    let leases = [one.lease_id(), two.lease_id()];
    drop((one, two));
    for id in leases {
        client.lease_revoke(id).await.unwrap();
    }
    assert!(keys_under(&mut client, "/l/").await.is_empty());
}

#[tokio::test]
async fn try_acquire_sees_the_queue_of_blocking_lock_calls() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (one, two, three) = (
        start_session(&mut client, 10).await,
        start_session(&mut client, 10).await,
        start_session(&mut client, 10).await,
    );

    let held1 = lock_on(&mut client, "/l", one.lease_id()).await;
    let mut client2 = client.clone();
    let lease2 = two.lease_id();
    let waiting = tokio::spawn(async move { lock_on(&mut client2, "/l", lease2).await });
    let key2 = format!("/l/{lease2:x}");
    eventually("session 2 queued", TIMEOUT, || {
        let mut client = client.clone();
        let key2 = key2.clone();
        async move {
            keys_under(&mut client, "/l/")
                .await
                .contains(&key2)
                .then_some(())
        }
    })
    .await;
    assert!(!waiting.is_finished(), "session 2 must wait while 1 holds");

    // A third contender trying while 1 holds and 2 waits: taken by 1, and it does not join the queue.
    let outcome = lock::try_acquire(&mut client, "/l", three.lease_id())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TryOutcome::Taken {
            holder: held1.clone()
        }
    );
    assert_eq!(keys_under(&mut client, "/l/").await.len(), 2);

    client.unlock(held1.key.as_str()).await.unwrap();
    let held2 = tokio::time::timeout(TIMEOUT, waiting)
        .await
        .expect("session 2 gets the lock once session 1 released it")
        .unwrap();
    assert_eq!(held2.key, key2);
    assert!(
        held2.create_revision > held1.create_revision,
        "the next holder's token is higher"
    );
    let outcome = lock::try_acquire(&mut client, "/l", three.lease_id())
        .await
        .unwrap();
    assert_eq!(outcome, TryOutcome::Taken { holder: held2 });

    let leases = [one.lease_id(), two.lease_id(), three.lease_id()];
    drop((one, two, three));
    for id in leases {
        client.lease_revoke(id).await.unwrap();
    }
    assert!(keys_under(&mut client, "/l/").await.is_empty());
}

#[tokio::test]
async fn fenced_write_rejects_a_holder_whose_lease_expired() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;

    // A holder that stalls: its lease is never renewed, as if the process were frozen.
    let stalled_lease = client.lease_grant(2, None).await.unwrap().id();
    let stalled = lock_on(&mut client, "/l", stalled_lease).await;
    assert!(
        lock::put_if_holder(&mut client, &stalled, "/res", "one")
            .await
            .unwrap()
            .is_some(),
        "the holder may write"
    );
    assert!(
        lock::put_if_holder(&mut client, &stalled, "/res", "two")
            .await
            .unwrap()
            .is_some(),
        "and write again while it holds"
    );

    // The lease runs out; a healthy session takes over.
    let fresh = start_session(&mut client, 10).await;
    let mut client2 = client.clone();
    let lease = fresh.lease_id();
    let next = tokio::time::timeout(
        TIMEOUT,
        async move { lock_on(&mut client2, "/l", lease).await },
    )
    .await
    .expect("the lock is free once the stalled lease expired");
    assert!(next.create_revision > stalled.create_revision);
    assert!(
        lock::put_if_holder(&mut client, &next, "/res", "new holder")
            .await
            .unwrap()
            .is_some()
    );

    // The stalled holder wakes up and writes with its old token: refused, and nothing changed.
    assert!(
        lock::put_if_holder(&mut client, &stalled, "/res", "stale")
            .await
            .unwrap()
            .is_none(),
        "a stale token must be rejected"
    );
    assert_eq!(
        get_value(&mut client, "/res").await.as_deref(),
        Some("new holder")
    );

    drop(fresh);
    client.lease_revoke(lease).await.unwrap();
    // Even after the new holder is gone, the old token stays refused: its key never comes back.
    assert!(lock::put_if_holder(&mut client, &stalled, "/res", "stale")
        .await
        .unwrap()
        .is_none());
}

/// What step 6 of the demo relies on: a lock taken without a lease gets a server lease that nobody renews.
#[tokio::test]
async fn a_lock_without_a_lease_gets_an_unrenewed_60s_server_lease() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let before = lease_ids(&mut client).await;

    let orphan = client.lock("/l", None).await.unwrap();
    let key = String::from_utf8_lossy(orphan.key()).into_owned();
    let lease = lease_of(&mut client, &key).await.expect("the key exists");
    assert!(
        lease != 0 && !before.contains(&lease),
        "etcd made a new lease"
    );
    assert_eq!(key, format!("/l/{lease:x}"));
    let first = client.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(first.granted_ttl(), 60);
    let first_ttl = first.ttl();

    // Nobody renews it: the remaining TTL only goes down.
    eventually("the server lease's TTL to go down", TIMEOUT, || {
        let mut client = client.clone();
        async move {
            let now = client.lease_time_to_live(lease, None).await.unwrap();
            (now.ttl() < first_ttl).then_some(())
        }
    })
    .await;

    client.lease_revoke(lease).await.unwrap();
    assert!(keys_under(&mut client, "/l/").await.is_empty());
}

#[tokio::test]
async fn a_session_outlives_its_ttl_and_revoking_its_lease_frees_the_lock() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut session = start_session(&mut client, 2).await;
    let held = lock_on(&mut client, "/l", session.lease_id()).await;

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

    let other = start_session(&mut client, 10).await;
    assert!(matches!(
        lock::try_acquire(&mut client, "/l", other.lease_id()).await.unwrap(),
        TryOutcome::Taken { holder: LockKey { ref key, .. } } if *key == held.key
    ));
    let lease = session.lease_id();
    drop(session);
    client.lease_revoke(lease).await.unwrap();
    assert!(matches!(
        lock::try_acquire(&mut client, "/l", other.lease_id())
            .await
            .unwrap(),
        TryOutcome::Acquired(_)
    ));
    let other_lease = other.lease_id();
    drop(other);
    client.lease_revoke(other_lease).await.unwrap();
    assert!(lease_ids(&mut client).await.is_empty());
}

#[tokio::test]
async fn a_session_reports_lost_when_its_lease_is_revoked_under_it() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut session = start_session(&mut client, 3).await;

    // Someone else (an operator with etcdctl) revokes the lease while the session still renews it.
    client.lease_revoke(session.lease_id()).await.unwrap();
    let why = tokio::time::timeout(TIMEOUT, session.lost())
        .await
        .expect("the next renewal (within TTL/3) finds the lease gone");
    assert!(why.contains("no longer exists"), "{why}");
    // Asking again gives the same answer instead of polling a finished task.
    assert_eq!(session.lost().await, why);
}

/// The same fault as keepalive's `a_broken_stream_is_reopened_while_the_lease_is_alive`: the two topics
/// keep separate copies of the renewal logic, and this keeps the lock's copy honest.
#[tokio::test]
async fn a_session_reopens_its_stream_after_an_etcd_restart() {
    let mut etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut session = start_session(&mut client, 5).await;
    let held = lock_on(&mut client, "/l", session.lease_id()).await;

    etcd.kill();
    etcd.restart().await;
    let restarted = std::time::Instant::now();

    // A renewal confirmed after the restart moves the session's deadline past restart + TTL. Until then,
    // and after, the session is not lost.
    let ttl = Duration::from_secs(session.ttl() as u64);
    while session.alive_until() < restarted + ttl {
        assert!(
            restarted.elapsed() < ttl,
            "no renewal confirmed within a TTL of the restart"
        );
        tokio::select! {
            why = session.lost() => panic!("the session was lost across a short restart: {why}"),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    assert!(session.is_alive());

    let mut client = etcd.client().await;
    let left = client
        .lease_time_to_live(session.lease_id(), None)
        .await
        .unwrap()
        .ttl();
    assert!(left > 0, "the lease lives on the server");
    assert_eq!(keys_under(&mut client, "/l/").await, [held.key.as_str()]);
    assert!(
        lock::put_if_holder(&mut client, &held, "/res", "after the restart")
            .await
            .unwrap()
            .is_some()
    );

    let lease = session.lease_id();
    drop(session);
    client.lease_revoke(lease).await.unwrap();
}

#[tokio::test]
async fn a_session_is_lost_only_once_its_ttl_ran_out_while_etcd_stays_down() {
    let mut etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut session = start_session(&mut client, 3).await;

    etcd.stop();
    let why = tokio::time::timeout(TIMEOUT, session.lost())
        .await
        .expect("lost within the TTL, not later");
    assert!(
        std::time::Instant::now() >= session.alive_until(),
        "reported lost while the lease could still be alive: {why}"
    );
    assert!(
        why.contains(&format!("{:016x}", session.lease_id())),
        "{why}"
    );
    assert!(!session.is_alive());
}

#[tokio::test]
async fn a_fenced_write_returns_the_revision_it_wrote_at() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let session = start_session(&mut client, 10).await;
    let held = lock_on(&mut client, "/l", session.lease_id()).await;

    let written_at = lock::put_if_holder(&mut client, &held, "/res", "v")
        .await
        .unwrap()
        .expect("the holder may write");
    let got = client.get("/res", None).await.unwrap();
    assert_eq!(got.kvs()[0].mod_revision(), written_at);

    let lease = session.lease_id();
    drop(session);
    client.lease_revoke(lease).await.unwrap();
}
