//! The recipes `ResumingWatch` and `Backoff` (crates/recipes), in-process, against a throwaway etcd.

use std::net::TcpListener;
use std::time::Duration;

use etcd_client::{Client, EventType, Txn, TxnOp, WatchStream};
use recipes::errors::is_transient;
use recipes::resuming_watch::ResumingWatch;
use test_etcd::{delete, put, TestEtcd};
use tokio::sync::mpsc;

/// The pause after failure number `n + 1` of the default schedule.
fn backoff(n: u32) -> Duration {
    let mut schedule = recipes::errors::Backoff::default();
    for _ in 0..n {
        schedule.next_pause();
    }
    schedule.next_pause()
}

const LIMIT: Duration = Duration::from_secs(10);

/// What a watch reports, as (PUT or DELETE, key, value, revision), to compare with what was written.
type Seen = (&'static str, String, String, i64);

fn put_seen(key: &str, value: &str, revision: i64) -> Seen {
    ("PUT", key.into(), value.into(), revision)
}

/// Reads `n` events from `stream`, moving `watch` past each response, failing after LIMIT or on a cancel.
async fn events(stream: &mut WatchStream, watch: &mut ResumingWatch, n: usize) -> Vec<Seen> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let response = tokio::time::timeout(LIMIT, stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {seen:?} within {LIMIT:?}, expected {n} events"))
            .expect("the stream works")
            .expect("the stream stays open");
        assert!(!response.canceled(), "canceled: {response:?}");
        for event in response.events() {
            let kv = event.kv().expect("etcd sends the key-value");
            let kind = match event.event_type() {
                EventType::Put => "PUT",
                EventType::Delete => "DELETE",
            };
            seen.push((
                kind,
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
            ));
        }
        watch.advance(&response);
    }
    assert_eq!(seen.len(), n, "more events than written: {seen:?}");
    seen
}

fn no_retry(attempt: u32, error: &anyhow::Error, _: Duration) {
    panic!("attempt {attempt} failed against a healthy etcd: {error:#}");
}

#[tokio::test]
async fn a_watch_from_now_pins_the_revision_and_reports_later_changes() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let before = put(&mut client, "name", "before").await;

    let mut watch = ResumingWatch::new("name", false, None);
    assert_eq!(watch.next_revision(), None);
    let mut opened = watch.reopen(&client, LIMIT, no_retry).await.unwrap();
    assert_eq!(
        opened.start_revision,
        before + 1,
        "from now = after the store revision at creation"
    );
    assert_eq!(watch.next_revision(), Some(before + 1));
    assert!(opened.state.is_none(), "reopen reads no state");

    let written = put(&mut client, "name", "hello").await;
    let deleted = delete(&mut client, "name").await;
    assert_eq!(
        events(&mut opened.stream, &mut watch, 2).await,
        [
            put_seen("name", "hello", written),
            ("DELETE", "name".into(), String::new(), deleted)
        ],
        "the write made before the watch is not reported; a delete has no value"
    );
    assert_eq!(watch.next_revision(), Some(deleted + 1));
}

#[tokio::test]
async fn a_prefix_watch_sees_keys_under_the_prefix_only() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut watch = ResumingWatch::new("/app/", true, None);
    let mut opened = watch.reopen(&client, LIMIT, no_retry).await.unwrap();

    let a = put(&mut client, "/app/a", "1").await;
    put(&mut client, "/other", "x").await;
    put(&mut client, "/app", "no slash").await;
    let b = put(&mut client, "/app/b", "2").await;
    assert_eq!(
        events(&mut opened.stream, &mut watch, 2).await,
        [put_seen("/app/a", "1", a), put_seen("/app/b", "2", b)]
    );
}

#[tokio::test]
async fn a_watch_from_a_past_revision_replays_history() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let first = put(&mut client, "name", "v1").await;
    let second = put(&mut client, "name", "v2").await;

    let mut watch = ResumingWatch::new("name", false, Some(first));
    let mut opened = watch.reopen(&client, LIMIT, no_retry).await.unwrap();
    assert_eq!(opened.start_revision, first);
    assert_eq!(
        events(&mut opened.stream, &mut watch, 2).await,
        [
            put_seen("name", "v1", first),
            put_seen("name", "v2", second)
        ]
    );
}

/// The brief of lib.rs relies on this: one `Client`, kept across an etcd restart, works again once etcd
/// is back, so `reopen` needs no new client.
#[tokio::test]
async fn the_same_client_reopens_after_an_etcd_restart_without_gaps_or_repeats() {
    let mut etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut watch = ResumingWatch::new("name", false, None);
    let mut opened = watch.reopen(&client, LIMIT, no_retry).await.unwrap();
    let before = put(&mut client, "name", "before").await;
    assert_eq!(
        events(&mut opened.stream, &mut watch, 1).await,
        [put_seen("name", "before", before)]
    );

    etcd.restart().await;
    let lost = tokio::time::timeout(LIMIT, opened.stream.message())
        .await
        .expect("a dead stream is noticed");
    assert!(
        !matches!(lost, Ok(Some(_))),
        "the old stream ends: {lost:?}"
    );

    // Written by another client while this watch has no stream.
    let after = put(&mut etcd.client().await, "name", "after").await;
    let mut retries = 0;
    let mut opened = watch
        .reopen(&client, LIMIT, |_, _, _| retries += 1)
        .await
        .expect("the same client reaches the restarted etcd");
    assert_eq!(opened.start_revision, before + 1);
    assert!(retries <= 1, "{retries} retries against an etcd that is up");
    assert_eq!(
        events(&mut opened.stream, &mut watch, 1).await,
        [put_seen("name", "after", after)],
        "the write made while no watch was open arrives, the one already seen does not"
    );
}

#[tokio::test]
async fn reopen_retries_with_backoff_while_etcd_is_down_then_resumes() {
    let mut etcd = TestEtcd::start().await;
    let client = etcd.client().await;
    let mut watch = ResumingWatch::new("name", false, None);
    let opened = watch.reopen(&client, LIMIT, no_retry).await.unwrap();
    let from = opened.start_revision;
    drop(opened);
    etcd.kill();

    // Bring etcd back only once `reopen` has reported two failed attempts, then write.
    let (failed, mut failures) = mpsc::unbounded_channel();
    let reopening = watch.reopen(&client, Duration::from_secs(2), |attempt, _, pause| {
        let _ = failed.send((attempt, pause));
    });
    let restarting = async {
        let mut reported = Vec::new();
        while reported.len() < 2 {
            reported.push(failures.recv().await.expect("reopen is still running"));
        }
        etcd.restart().await;
        reported
    };
    let (opened, reported) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(reopening, restarting)
    })
    .await
    .expect("reopen succeeds soon after etcd is back");
    let mut opened = opened.expect("reopen ends with a watch, not an error");
    assert_eq!(reported, [(1, backoff(0)), (2, backoff(1))]);
    assert_eq!(opened.start_revision, from, "it resumes where it was");

    let written = put(&mut etcd.client().await, "name", "back").await;
    assert_eq!(
        events(&mut opened.stream, &mut watch, 1).await,
        [put_seen("name", "back", written)]
    );
}

#[tokio::test]
async fn each_attempt_is_bounded_when_the_server_never_answers() {
    // Something that accepts TCP connections and never says a word, like a frozen etcd.
    let silent = TcpListener::bind("127.0.0.1:0").expect("loopback can bind");
    let endpoint = silent.local_addr().expect("bound").to_string();
    let client = Client::connect([endpoint], None)
        .await
        .expect("connect is lazy");

    let mut watch = ResumingWatch::new("name", false, Some(5));
    let mut failures = Vec::new();
    let gave_up = tokio::time::timeout(
        Duration::from_secs(3),
        watch.reopen(&client, Duration::from_millis(300), |attempt, e, _| {
            failures.push((attempt, format!("{e:#}")));
        }),
    )
    .await;
    assert!(gave_up.is_err(), "no watch can open there: {gave_up:?}");
    assert!(
        failures.len() >= 2,
        "attempts were not bounded: {failures:?}"
    );
    assert_eq!(failures[0].0, 1);
    assert!(
        failures
            .iter()
            .all(|(_, e)| e.contains("did not answer within 300ms")),
        "{failures:?}"
    );
    assert_eq!(
        watch.next_revision(),
        Some(5),
        "a failed attempt moves nothing"
    );
}

#[tokio::test]
async fn a_compacted_start_is_canceled_and_catch_up_reads_the_state_then_watches_after_it() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let old = put(&mut client, "/s/a", "old").await;
    let b = put(&mut client, "/s/b", "2").await;
    put(&mut client, "/t", "outside").await;
    let kept = put(&mut client, "/s/a", "kept").await;
    client.compact(kept, None).await.expect("compact succeeds");

    let mut watch = ResumingWatch::new("/s/", true, Some(old));
    let mut opened = watch.reopen(&client, LIMIT, no_retry).await.unwrap();
    let canceled = tokio::time::timeout(LIMIT, opened.stream.message())
        .await
        .expect("etcd answers")
        .expect("the stream works")
        .expect("the stream stays open");
    assert!(canceled.canceled(), "{canceled:?}");
    assert_eq!(canceled.compact_revision(), kept);

    let mut opened = watch.catch_up(&client, LIMIT, no_retry).await.unwrap();
    let state = opened.state.take().expect("catch_up reads the state");
    let read_at = state.header().expect("a GET has a header").revision();
    assert_eq!(read_at, kept, "the GET is at the current store revision");
    assert_eq!(opened.start_revision, kept + 1);
    assert_eq!(watch.next_revision(), Some(kept + 1));
    let keys: Vec<(String, String, i64)> = state
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("/s/a".into(), "kept".into(), kept),
            ("/s/b".into(), "2".into(), b)
        ],
        "the prefix's keys and nothing else"
    );

    let new = put(&mut client, "/s/c", "new").await;
    assert_eq!(
        events(&mut opened.stream, &mut watch, 1).await,
        [put_seen("/s/c", "new", new)]
    );
}

#[tokio::test]
async fn advance_moves_past_the_last_event_and_ignores_responses_without_events() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut watch = ResumingWatch::new("/t/", true, None);
    let mut opened = watch.reopen(&client, LIMIT, no_retry).await.unwrap();

    // One transaction, one revision, two events in one response: the position moves past it once.
    let txn = Txn::new().and_then([TxnOp::put("/t/a", "1", None), TxnOp::put("/t/b", "2", None)]);
    let both = client.txn(txn).await.expect("txn succeeds");
    let both = both.header().expect("a txn has a header").revision();
    let seen = events(&mut opened.stream, &mut watch, 2).await;
    assert_eq!(
        seen,
        [put_seen("/t/a", "1", both), put_seen("/t/b", "2", both)]
    );
    assert_eq!(watch.next_revision(), Some(both + 1));
    let start = both + 1;

    // A cancel confirmation has no events: the position stays.
    opened
        .stream
        .cancel(opened.watch_id)
        .await
        .expect("cancel is sent");
    let confirmation = tokio::time::timeout(LIMIT, opened.stream.message())
        .await
        .expect("etcd answers")
        .expect("the stream works")
        .expect("the stream stays open");
    assert!(confirmation.canceled(), "{confirmation:?}");
    watch.advance(&confirmation);
    assert_eq!(watch.next_revision(), Some(start));
}

/// The classifier in the retry loop, with a real error from a real etcd: a reply over the limit (here a
/// small one, 64 KiB) fails the same way on every try, so `catch_up` gives up at once instead of retrying,
/// and the stream's own error is classified the same.
#[tokio::test]
async fn a_reply_over_the_limit_is_not_retried() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let value = "x".repeat(40_000);
    let first = put(&mut client, "/big/a", &value).await;
    put(&mut client, "/big/b", &value).await;

    let mut watch = ResumingWatch::new("/big/", true, Some(first)).with_max_response(64 * 1024);
    let mut opened = watch.reopen(&client, LIMIT, no_retry).await.unwrap();
    let error = tokio::time::timeout(LIMIT, opened.stream.message())
        .await
        .expect("etcd answers")
        .expect_err("80 KB of replay is over 64 KiB");
    assert!(!is_transient(&error), "{error:?}");
    let said = format!(
        "{:#}",
        recipes::resuming_watch::give_up("watch /big/", error, 64 * 1024)
    );
    assert!(
        said.starts_with(
            "watch /big/: one reply from etcd is over the 65536 bytes this watcher accepts"
        ),
        "{said}"
    );

    let gave_up = watch
        .catch_up(&client, LIMIT, no_retry)
        .await
        .expect_err("the GET of the state is over the limit too");
    assert!(
        format!("{gave_up:#}").contains("read the state of every key under /big/"),
        "{gave_up:#}"
    );
    assert!(
        is_transient(&etcd_client::Error::WatchError("channel closed".into())),
        "a broken stream is worth retrying"
    );
}
