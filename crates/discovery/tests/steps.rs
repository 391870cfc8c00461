//! The items of `src/lib.rs`, in-process, against a real etcd: `register` and its `Registration`, and
//! `InstanceWatch`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use discovery::{InstanceWatch, Registered, Registration};
use etcd_client::{Client, GetOptions};
use test_etcd::{delete, get_value, lease_exists, lease_ids, lease_of, put, TestEtcd};

const LIMIT: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(2);

fn no_retry(attempt: u32, error: &anyhow::Error, _: Duration) {
    panic!("attempt {attempt} failed: {error:#}");
}

async fn registered(client: &Client, key: &str, addr: &str, ttl: i64) -> Registration {
    match discovery::register(client, key, addr, ttl)
        .await
        .expect("register")
    {
        Registered::Now(registration) => registration,
        Registered::Taken(holder) => panic!("{key} is taken: {holder:?}"),
    }
}

fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(id, addr)| (id.to_string(), addr.to_string()))
        .collect()
}

#[tokio::test]
async fn a_registration_outlives_twice_its_ttl_and_deregister_removes_it_at_once() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let registration = registered(&client, "/services/api/a", "127.0.0.1:8001", 2).await;
    let lease = registration.lease_id();
    assert_eq!(lease_of(&mut client, "/services/api/a").await, Some(lease));

    // Renewed in the background: still there after twice the TTL.
    tokio::time::sleep(Duration::from_secs(2 * registration.ttl() as u64)).await;
    assert_eq!(
        get_value(&mut client, "/services/api/a").await.as_deref(),
        Some("127.0.0.1:8001")
    );

    registration
        .deregister(&client, TIMEOUT)
        .await
        .expect("deregister");
    assert_eq!(get_value(&mut client, "/services/api/a").await, None);
    assert!(!lease_exists(&mut client, lease).await);
}

#[tokio::test]
async fn register_refuses_a_taken_key_names_the_holder_and_leaves_no_lease() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let first = registered(&client, "/services/api/a", "127.0.0.1:8001", 5).await;

    let Registered::Taken(holder) =
        discovery::register(&client, "/services/api/a", "127.0.0.1:8009", 5)
            .await
            .expect("register")
    else {
        panic!("a second registration of the same key was accepted");
    };
    assert_eq!(holder.addr, "127.0.0.1:8001");
    assert_eq!(holder.lease, first.lease_id());
    assert_eq!(holder.create_revision, first.create_revision());
    assert_eq!(
        lease_ids(&mut client).await,
        [first.lease_id()],
        "no lease left by the refused one"
    );

    // A key written by hand, on no lease, is someone else's too.
    put(&mut client, "/services/api/manual", "127.0.0.1:7000").await;
    let Registered::Taken(manual) =
        discovery::register(&client, "/services/api/manual", "127.0.0.1:8009", 5)
            .await
            .expect("register")
    else {
        panic!("a key written by hand was overwritten");
    };
    assert_eq!((manual.addr.as_str(), manual.lease), ("127.0.0.1:7000", 0));
}

#[tokio::test]
async fn lost_resolves_when_the_lease_is_revoked_elsewhere() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut registration = registered(&client, "/services/api/a", "127.0.0.1:8001", 3).await;
    client
        .lease_revoke(registration.lease_id())
        .await
        .expect("revoke");
    let revoked = Instant::now();
    let why = tokio::time::timeout(LIMIT, registration.lost())
        .await
        .expect("lost in time");
    assert!(
        revoked.elapsed() < Duration::from_secs(2),
        "within TTL/3 + 1 s: {:?}",
        revoked.elapsed()
    );
    assert!(why.contains("it was revoked"), "{why}");
    assert_eq!(get_value(&mut client, "/services/api/a").await, None);
}

#[tokio::test]
async fn the_watcher_misses_nothing_between_its_read_and_its_watch() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    put(&mut client, "/services/api/a", "127.0.0.1:8001").await;

    // The read...
    let got = client
        .get("/services/api/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut watch = InstanceWatch::new("/services/api/");
    watch.load(&got);
    assert_eq!(watch.instances(), &set(&[("a", "127.0.0.1:8001")]));

    // ...two changes before the watch opens...
    put(&mut client, "/services/api/b", "127.0.0.1:8002").await;
    let deleted = delete(&mut client, "/services/api/a").await;

    // ...come first on the watch, opened from the read's revision + 1. (A watch "from now" would miss
    // both, and believe a is still there.) Replayed history may come as one response: then the set is
    // reported once, after both.
    let mut seen = Vec::new();
    while seen.last() != Some(&set(&[("b", "127.0.0.1:8002")])) {
        let instances = tokio::time::timeout(LIMIT, watch.changed(&client, TIMEOUT, no_retry))
            .await
            .expect("a change in time")
            .expect("the watch works");
        seen.push(instances.clone());
        assert!(seen.len() <= 2, "{seen:?}");
    }
    if seen.len() == 2 {
        assert_eq!(
            seen[0],
            set(&[("a", "127.0.0.1:8001"), ("b", "127.0.0.1:8002")])
        );
    }
    assert_eq!(watch.next_revision(), Some(deleted + 1));
    // An instance under a service whose name only starts the same is not one of these.
    put(&mut client, "/services/api2/x", "127.0.0.1:9").await;
    put(&mut client, "/services/api/c", "127.0.0.1:8003").await;
    let instances = watch.changed(&client, TIMEOUT, no_retry).await.unwrap();
    assert_eq!(
        instances,
        &set(&[("b", "127.0.0.1:8002"), ("c", "127.0.0.1:8003")])
    );
}

#[tokio::test]
async fn the_watcher_reads_again_when_its_history_was_compacted() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut watch = InstanceWatch::new("/services/api/");
    let first = watch
        .changed(&client, TIMEOUT, no_retry)
        .await
        .unwrap()
        .clone();
    assert!(first.is_empty());
    // Drop the open watch, as a stopped process would, then change and compact past where it was.
    let mut watch = {
        let at = watch.next_revision().unwrap();
        let got = client
            .get(
                "/services/api/",
                Some(GetOptions::new().with_prefix().with_revision(at - 1)),
            )
            .await
            .unwrap();
        let mut fresh = InstanceWatch::new("/services/api/");
        fresh.load(&got);
        fresh
    };
    put(&mut client, "/services/api/a", "127.0.0.1:8001").await;
    let last = put(&mut client, "/services/api/b", "127.0.0.1:8002").await;
    client.compact(last, None).await.expect("compact");

    let instances = tokio::time::timeout(LIMIT, watch.changed(&client, TIMEOUT, no_retry))
        .await
        .expect("in time")
        .expect("the watcher reads the set again");
    assert_eq!(
        instances,
        &set(&[("a", "127.0.0.1:8001"), ("b", "127.0.0.1:8002")])
    );
    assert_eq!(watch.next_revision(), Some(last + 1));
}

#[tokio::test]
async fn the_watcher_reopens_after_an_etcd_restart_without_missing_a_change() {
    let mut etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut watch = InstanceWatch::new("/services/api/");
    watch.changed(&client, TIMEOUT, no_retry).await.unwrap();
    put(&mut client, "/services/api/a", "127.0.0.1:8001").await;
    let instances = watch.changed(&client, TIMEOUT, no_retry).await.unwrap();
    assert_eq!(instances, &set(&[("a", "127.0.0.1:8001")]));

    etcd.restart().await;
    let mut other = etcd.client().await;
    put(&mut other, "/services/api/b", "127.0.0.1:8002").await;
    // The same client: its channel connects again by itself; the watch is opened again by `changed`.
    let instances = tokio::time::timeout(LIMIT, watch.changed(&client, TIMEOUT, |_, _, _| {}))
        .await
        .expect("in time")
        .expect("reopened");
    assert_eq!(
        instances,
        &set(&[("a", "127.0.0.1:8001"), ("b", "127.0.0.1:8002")])
    );
}
