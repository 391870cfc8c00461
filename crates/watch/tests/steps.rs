//! The watch step functions, in-process, against a throwaway etcd.

use std::time::Duration;

use test_etcd::{delete, put, TestEtcd};
use watch::{Change, Entry, Next, Target, Watch};

const LIMIT: Duration = Duration::from_secs(10);

fn key(name: &str) -> Target {
    Target {
        key: name.into(),
        prefix: false,
    }
}

fn prefix(name: &str) -> Target {
    Target {
        key: name.into(),
        prefix: true,
    }
}

/// Reads changes until there are `n`, failing on anything else or after LIMIT.
async fn changes(watch: &mut Watch, n: usize) -> Vec<Change> {
    let mut seen = Vec::new();
    while seen.len() < n {
        match tokio::time::timeout(LIMIT, watch.next()).await {
            Ok(Next::Changes(more)) => seen.extend(more),
            Ok(other) => panic!("expected changes, got {other:?} after {seen:?}"),
            Err(_) => panic!("only {seen:?} within {LIMIT:?}, expected {n} changes"),
        }
    }
    assert_eq!(seen.len(), n, "more changes than written: {seen:?}");
    seen
}

fn put_change(key: &str, value: &str, revision: i64) -> Change {
    Change::Put {
        key: key.into(),
        value: value.into(),
        revision,
    }
}

#[tokio::test]
async fn a_watch_from_now_reports_later_puts_and_deletes_with_their_revisions() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let before = put(&mut client, "name", "before").await;

    let mut watch = watch::open(&mut client, &key("name"), None).await.unwrap();
    assert_eq!(
        watch.start_revision,
        before + 1,
        "from now = after the store revision at creation"
    );

    let written = put(&mut client, "name", "hello").await;
    let deleted = delete(&mut client, "name").await;
    assert_eq!(
        changes(&mut watch, 2).await,
        [
            put_change("name", "hello", written),
            Change::Delete {
                key: "name".into(),
                revision: deleted
            },
        ],
        "the write made before the watch is not reported"
    );
}

#[tokio::test]
async fn a_prefix_watch_sees_keys_under_the_prefix_only() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut watch = watch::open(&mut client, &prefix("/app/"), None)
        .await
        .unwrap();

    let a = put(&mut client, "/app/a", "1").await;
    put(&mut client, "/other", "x").await;
    put(&mut client, "/app", "no slash").await;
    let b = put(&mut client, "/app/b", "2").await;
    assert_eq!(
        changes(&mut watch, 2).await,
        [put_change("/app/a", "1", a), put_change("/app/b", "2", b)]
    );
}

#[tokio::test]
async fn a_watch_from_a_past_revision_replays_history() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let first = put(&mut client, "name", "v1").await;
    let second = put(&mut client, "name", "v2").await;

    let mut watch = watch::open(&mut client, &key("name"), Some(first))
        .await
        .unwrap();
    assert_eq!(watch.start_revision, first);
    assert_eq!(
        changes(&mut watch, 2).await,
        [
            put_change("name", "v1", first),
            put_change("name", "v2", second)
        ]
    );
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_is_canceled_and_the_state_can_be_read() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let old = put(&mut client, "name", "old").await;
    let kept = put(&mut client, "name", "kept").await;
    client.compact(kept, None).await.expect("compact succeeds");

    let mut watch = watch::open(&mut client, &key("name"), Some(old))
        .await
        .unwrap();
    let next = tokio::time::timeout(LIMIT, watch.next())
        .await
        .expect("etcd answers");
    assert_eq!(
        next,
        Next::Compacted {
            compact_revision: kept
        }
    );

    let (revision, entries) = watch::current_state(&mut client, &key("name"))
        .await
        .unwrap();
    assert_eq!(revision, kept, "the GET is at the current store revision");
    assert_eq!(
        entries,
        [Entry {
            key: "name".into(),
            value: "kept".into(),
            mod_revision: kept
        }]
    );
}

#[tokio::test]
async fn current_state_of_a_prefix_lists_its_keys_and_nothing_else() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let b = put(&mut client, "/s/b", "2").await;
    let a = put(&mut client, "/s/a", "1").await;
    let last = put(&mut client, "/t", "outside").await;

    let (revision, entries) = watch::current_state(&mut client, &prefix("/s/"))
        .await
        .unwrap();
    assert_eq!(revision, last);
    let got: Vec<(&str, &str, i64)> = entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str(), e.mod_revision))
        .collect();
    assert_eq!(got, [("/s/a", "1", a), ("/s/b", "2", b)]);

    let (_, none) = watch::current_state(&mut client, &key("missing"))
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_lost_connection_is_reported_and_a_new_watch_resumes_without_gaps() {
    let mut etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut watch = watch::open(&mut client, &key("name"), None).await.unwrap();
    let before = put(&mut client, "name", "before").await;
    assert_eq!(
        changes(&mut watch, 1).await,
        [put_change("name", "before", before)]
    );

    etcd.restart().await;
    let next = tokio::time::timeout(LIMIT, watch.next())
        .await
        .expect("a dead stream is noticed");
    assert!(matches!(next, Next::Lost(_)), "{next:?}");

    let mut client = etcd.client().await;
    let after = put(&mut client, "name", "after").await;
    let mut resumed = watch::open(&mut client, &key("name"), Some(before + 1))
        .await
        .unwrap();
    assert_eq!(
        changes(&mut resumed, 1).await,
        [put_change("name", "after", after)],
        "the write made while no watch was open arrives, the one already seen does not"
    );
}

#[tokio::test]
async fn cancel_is_confirmed_by_etcd() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let watch = watch::open(&mut client, &key("name"), None).await.unwrap();
    assert!(watch.cancel(LIMIT).await, "etcd answers a cancel");
}
