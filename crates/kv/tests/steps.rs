//! The kv step functions, in-process, against a throwaway etcd.

use test_etcd::TestEtcd;

#[tokio::test]
async fn put_then_get_returns_the_value_and_its_revisions() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;

    let first = kv::put(&mut client, "name", "one").await.unwrap();
    let second = kv::put(&mut client, "name", "two").await.unwrap();
    assert_eq!(
        second,
        first + 1,
        "each write bumps the store revision by one"
    );

    let entry = kv::get(&mut client, "name")
        .await
        .unwrap()
        .expect("name exists");
    assert_eq!(entry.value, "two");
    assert_eq!(entry.create_revision, first);
    assert_eq!(entry.mod_revision, second);
    assert_eq!(entry.version, 2);

    assert_eq!(kv::get(&mut client, "no-such-key").await.unwrap(), None);
}

#[tokio::test]
async fn put_with_prev_kv_returns_what_it_overwrote() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;

    let (_, none) = kv::put_returning_previous(&mut client, "/t/c", "red")
        .await
        .unwrap();
    assert_eq!(none, None, "a new key has no previous value");
    let (_, prev) = kv::put_returning_previous(&mut client, "/t/c", "blue")
        .await
        .unwrap();
    assert_eq!(prev.expect("overwrote red").value, "red");
}

#[tokio::test]
async fn prefix_listing_is_sorted_and_stays_inside_the_prefix() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    for (k, v) in [
        ("/p/b", "2"),
        ("/p/a", "1"),
        ("/p/c", "3"),
        ("/pz", "outside"),
        ("/o", "outside"),
    ] {
        kv::put(&mut client, k, v).await.unwrap();
    }
    let listed = kv::list_prefix(&mut client, "/p/").await.unwrap();
    let pairs: Vec<(&str, &str)> = listed
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(pairs, [("/p/a", "1"), ("/p/b", "2"), ("/p/c", "3")]);
}

#[tokio::test]
async fn old_revisions_stay_readable() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let red = kv::put(&mut client, "/t/c", "red").await.unwrap();
    kv::put(&mut client, "/t/c", "blue").await.unwrap();

    let then = kv::get_at_revision(&mut client, "/t/c", red).await.unwrap();
    assert_eq!(then.expect("existed at that revision").value, "red");
    let before = kv::get_at_revision(&mut client, "/t/c", red - 1)
        .await
        .unwrap();
    assert_eq!(before, None, "the key did not exist before its first put");
}

#[tokio::test]
async fn delete_prefix_returns_what_it_deleted_and_spares_other_keys() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    kv::put(&mut client, "/d/x", "1").await.unwrap();
    kv::put(&mut client, "/d/y", "2").await.unwrap();
    kv::put(&mut client, "name", "kept").await.unwrap();

    let (_, deleted) = kv::delete_prefix(&mut client, "/d/").await.unwrap();
    let keys: Vec<&str> = deleted.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["/d/x", "/d/y"]);
    assert!(kv::list_prefix(&mut client, "/d/")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        kv::get(&mut client, "name").await.unwrap().unwrap().value,
        "kept"
    );
}
