//! `kv::get_prefix_in_pages`, in-process, against a throwaway etcd.

use etcd_client::Client;
use test_etcd::{put, TestEtcd};

fn keys(kvs: &[etcd_client::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

async fn fill(client: &mut Client) {
    for (k, v) in [
        ("/p/b", "2"),
        ("/p/a", "1"),
        ("/p/e", "5"),
        ("/p/c", "3"),
        ("/p/d", "4"),
        ("/pz", "outside"),
        ("/o", "outside"),
    ] {
        put(client, k, v).await;
    }
}

#[tokio::test]
async fn pages_return_every_key_under_the_prefix_once_in_key_order() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    fill(&mut client).await;

    for page_size in [1, 2, 3, 5, 100] {
        let (_, kvs) = kv::get_prefix_in_pages(&mut client, "/p/", page_size)
            .await
            .unwrap();
        assert_eq!(
            keys(&kvs),
            ["/p/a", "/p/b", "/p/c", "/p/d", "/p/e"],
            "page size {page_size}"
        );
    }
    let (_, none) = kv::get_prefix_in_pages(&mut client, "/nothing/", 2)
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn the_pages_are_one_snapshot_even_while_others_write() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    fill(&mut client).await;

    // A writer keeps adding keys under the prefix while we page through it one key per request.
    let mut writer = etcd.client().await;
    let writing = tokio::spawn(async move {
        for i in 0..200 {
            put(&mut writer, &format!("/p/new-{i:03}"), "late").await;
        }
    });
    let (revision, kvs) = kv::get_prefix_in_pages(&mut client, "/p/", 1)
        .await
        .unwrap();
    writing.await.unwrap();

    // Exactly what one read at that revision returns: nothing written after it, nothing missing.
    let at = client
        .get(
            "/p/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_revision(revision),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&kvs), keys(at.kvs()));
    assert!(kvs.iter().all(|kv| kv.mod_revision() <= revision));
    let now = client
        .get("/p/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(now.count(), 5 + 200, "the writer did write meanwhile");
}

#[tokio::test]
async fn values_too_big_for_one_reply_come_back_in_pages() {
    // Five values of 1 MiB each: one range read of them would be a 5 MiB reply, more than the client's
    // 4 MiB message limit. Two per page stays under it.
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let big = "x".repeat(1024 * 1024);
    for i in 0..5 {
        client
            .put(format!("/big/{i}"), big.as_str(), None)
            .await
            .unwrap();
    }
    let whole = client
        .get("/big/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await;
    assert!(
        whole.is_err(),
        "one reply of 5 MiB is refused by the client"
    );

    let (_, kvs) = kv::get_prefix_in_pages(&mut client, "/big/", 2)
        .await
        .unwrap();
    assert_eq!(kvs.len(), 5);
    assert!(kvs.iter().all(|kv| kv.value().len() == big.len()));
}
