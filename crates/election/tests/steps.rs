//! `current_leader` (src/lib.rs) and the session the programs campaign with (`recipes::kept_lease::Session`)
//! in-process, against a throwaway etcd, together with the etcd-client election calls the programs make
//! around them, and what the README says about them.

use std::time::Duration;

use etcd_client::{Client, LeaderKey, ProclaimOptions, ResignOptions};
use recipes::kept_lease::Session;
use test_etcd::{eventually, get_value, keys_under, lease_ids, lease_of, TestEtcd};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A lease of `ttl` seconds and a session renewing it, as the demo and the candidate start one.
async fn start_session(client: &mut Client, ttl: i64) -> Session {
    let grant = client.lease_grant(ttl, None).await.unwrap();
    Session::start(client, grant.id(), grant.ttl())
        .await
        .unwrap()
}

/// Campaigns and returns the leader key (the call returns once this candidate leads).
async fn campaign(client: &mut Client, name: &str, value: &str, lease: i64) -> LeaderKey {
    let won = client.campaign(name, value, lease).await.unwrap();
    won.leader()
        .cloned()
        .expect("a campaign answers a leader key")
}

async fn end(client: &mut Client, session: Session) {
    let lease = session.lease_id();
    drop(session);
    client.lease_revoke(lease).await.unwrap();
}

/// The README's claim that Go and Rust candidates share an election: the key is Go's
/// `concurrency.Election` key, `<name>/<lease ID in %x>`, on the candidate's lease, holding its value.
/// And `proclaim` rewrites it in place: same key, same create revision, same lease, new value.
#[tokio::test]
async fn campaign_writes_gos_key_on_the_lease_and_proclaim_keeps_it_there() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let session = start_session(&mut client, 10).await;
    let lease = session.lease_id();

    let leader = campaign(&mut client, "/my-election", "10.0.0.1:8080", lease).await;
    let key = format!("/my-election/{lease:x}");
    assert_eq!(leader.key(), key.as_bytes());
    assert_eq!(leader.name(), b"/my-election");
    assert_eq!(leader.lease(), lease);
    assert_eq!(lease_of(&mut client, &key).await, Some(lease));
    assert_eq!(
        get_value(&mut client, &key).await.as_deref(),
        Some("10.0.0.1:8080")
    );
    let created = client.get(key.as_str(), None).await.unwrap().kvs()[0].create_revision();
    assert_eq!(leader.rev(), created, "rev is the key's create revision");

    client
        .proclaim(
            "10.0.0.1:9090",
            Some(ProclaimOptions::new().with_leader(leader.clone())),
        )
        .await
        .unwrap();
    let got = client.get(key.as_str(), None).await.unwrap();
    let kv = &got.kvs()[0];
    assert_eq!(kv.value(), b"10.0.0.1:9090");
    assert_eq!(kv.create_revision(), created, "still the same leader");
    assert_eq!(kv.lease(), lease, "proclaim keeps the key on the lease");
    let now = election::current_leader(&mut client, "/my-election")
        .await
        .unwrap()
        .expect("a leads");
    assert_eq!(now.value(), b"10.0.0.1:9090");

    client
        .resign(Some(ResignOptions::new().with_leader(leader)))
        .await
        .unwrap();
    assert!(keys_under(&mut client, "/my-election/").await.is_empty());
    end(&mut client, session).await;
}

/// `client.leader` on an empty election is an error with gRPC code UNKNOWN, the code of a broken
/// connection too; `current_leader` turns exactly that one into `None`.
#[tokio::test]
async fn nobody_leading_is_none_for_current_leader_and_an_unknown_error_for_leader() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;

    let err = client.leader("/empty").await.unwrap_err();
    let etcd_client::Error::GRpcStatus(status) = &err else {
        panic!("expected a gRPC status: {err:?}");
    };
    assert!(status.message().contains(election::NO_LEADER), "{err:?}");
    assert_eq!(i32::from(status.code()), 2, "UNKNOWN: {err:?}");
    assert!(
        recipes::errors::is_transient(&err),
        "which is why it needs telling apart"
    );
    assert!(election::current_leader(&mut client, "/empty")
        .await
        .unwrap()
        .is_none());

    let session = start_session(&mut client, 10).await;
    campaign(&mut client, "/empty", "me", session.lease_id()).await;
    let kv = election::current_leader(&mut client, "/empty")
        .await
        .unwrap()
        .expect("someone leads now");
    assert_eq!(kv.value(), b"me");
    end(&mut client, session).await;
}

/// The waiter's retry in candidate.rs: campaigning again with the same lease finds the key and keeps its
/// create revision, so a candidate whose campaign call broke with an etcd restart (the server side of the
/// first call is gone, its key is not) keeps its place in the line. Here the first call is still in
/// flight when the second is made, which is what the second call sees after such a restart.
#[tokio::test]
async fn campaigning_again_with_the_same_lease_keeps_the_place_in_line() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let one = start_session(&mut client, 10).await;
    let two = start_session(&mut client, 10).await;
    let first = campaign(&mut client, "/e", "one", one.lease_id()).await;

    // Two's campaign waits; then it campaigns again with the same lease.
    let key2 = format!("/e/{:x}", two.lease_id());
    let mut client2 = client.clone();
    let lease2 = two.lease_id();
    let waiting = tokio::spawn(async move { client2.campaign("/e", "two", lease2).await });
    let queued_at = eventually("two queued", TIMEOUT, || {
        let mut client = client.clone();
        let key2 = key2.clone();
        async move {
            let got = client.get(key2.as_str(), None).await.unwrap();
            got.kvs().first().map(|kv| kv.create_revision())
        }
    })
    .await;
    assert!(!waiting.is_finished(), "two waits while one leads");

    let mut client2 = client.clone();
    let again = tokio::spawn(async move { client2.campaign("/e", "two", lease2).await });
    client
        .resign(Some(ResignOptions::new().with_leader(first)))
        .await
        .unwrap();
    let won = tokio::time::timeout(TIMEOUT, again)
        .await
        .expect("two is elected once one resigned")
        .unwrap()
        .unwrap();
    let leader = won.leader().unwrap();
    assert_eq!(leader.key(), key2.as_bytes());
    assert_eq!(leader.rev(), queued_at, "the place in line was kept");
    waiting.abort();
    end(&mut client, one).await;
    end(&mut client, two).await;
}

/// Resign and proclaim check the create revision: a stale leader key (from an earlier term of the same
/// session, whose key has the same name but a newer create revision) deletes nothing and writes nothing.
#[tokio::test]
async fn resigning_with_a_stale_leader_key_deletes_nothing() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let session = start_session(&mut client, 10).await;
    let old = campaign(&mut client, "/e", "first term", session.lease_id()).await;
    client
        .resign(Some(ResignOptions::new().with_leader(old.clone())))
        .await
        .unwrap();
    // The same session campaigns again: same key, new create revision.
    let new = campaign(&mut client, "/e", "second term", session.lease_id()).await;
    assert_eq!(old.key(), new.key());
    assert!(new.rev() > old.rev());

    client
        .resign(Some(ResignOptions::new().with_leader(old)))
        .await
        .unwrap();
    let still = election::current_leader(&mut client, "/e")
        .await
        .unwrap()
        .expect("the second term still leads");
    assert_eq!(still.value(), b"second term");
    // And a stale proclaim is refused.
    let stale = LeaderKey::new()
        .with_name("/e")
        .with_key(new.key().to_vec())
        .with_rev(new.rev() - 1)
        .with_lease(new.lease());
    assert!(client
        .proclaim("hijack", Some(ProclaimOptions::new().with_leader(stale)))
        .await
        .is_err());
    assert_eq!(
        get_value(&mut client, std::str::from_utf8(new.key()).unwrap())
            .await
            .as_deref(),
        Some("second term")
    );
    end(&mut client, session).await;
    assert!(keys_under(&mut client, "/e/").await.is_empty());
}

/// The session keeps the leadership for longer than the TTL; revoking its lease ends it and elects the
/// next candidate at once.
#[tokio::test]
async fn a_session_keeps_the_leadership_past_its_ttl_and_revoking_it_elects_the_next() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut session = start_session(&mut client, 2).await;
    let leader = campaign(&mut client, "/e", "kept", session.lease_id()).await;

    let until = tokio::time::Instant::now() + Duration::from_secs(2 * session.ttl() as u64);
    while tokio::time::Instant::now() < until {
        let now = election::current_leader(&mut client, "/e").await.unwrap();
        assert_eq!(
            now.map(|kv| kv.key().to_vec()),
            Some(leader.key().to_vec()),
            "still the leader although the TTL passed"
        );
        tokio::select! {
            why = session.lost() => panic!("session lost: {why}"),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }

    let next = start_session(&mut client, 10).await;
    let mut client2 = client.clone();
    let lease2 = next.lease_id();
    let waiting = tokio::spawn(async move { client2.campaign("/e", "next", lease2).await });
    eventually("next queued", TIMEOUT, || {
        let mut client = client.clone();
        async move { (keys_under(&mut client, "/e/").await.len() == 2).then_some(()) }
    })
    .await;
    end(&mut client, session).await;
    tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("elected at once once the leader's lease was revoked")
        .unwrap()
        .unwrap();
    end(&mut client, next).await;
    assert!(lease_ids(&mut client).await.is_empty());
}
