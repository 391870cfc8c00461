//! The real `watch` binary against a 3-member cluster whose members die while a writer keeps writing.

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use test_etcd::{Bin, Signal, TestCluster};

const WATCH: &str = env!("CARGO_BIN_EXE_watch");

/// The store revision at the end of a `PUT key = value (revision N)` line.
fn revision_in(line: &str) -> i64 {
    line.rsplit_once("(revision ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {line:?}"))
}

/// Puts `count` new keys under /c/ through `client`, each attempt bounded by a second and under a key of
/// its own (`next` counts them), so an attempt that timed out but did commit is still one distinct key in
/// the history. Returns the revision of the last put that was confirmed.
async fn write(client: &mut Client, next: &mut u32, count: usize) -> i64 {
    let mut confirmed = 0;
    let mut last = 0;
    let mut pause = Duration::from_millis(50);
    while confirmed < count {
        *next += 1;
        let put = client.put(format!("/c/{:04}", *next), "v", None);
        match tokio::time::timeout(Duration::from_secs(1), put).await {
            Ok(Ok(resp)) => {
                last = resp.header().expect("a put reply has a header").revision();
                confirmed += 1;
                pause = Duration::from_millis(50);
            }
            // During an election the survivors may refuse or stall a write for a moment.
            _ => {
                assert!(*next < 1000, "the cluster kept refusing writes");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
    last
}

#[tokio::test]
async fn watch_loses_no_event_when_a_member_dies() {
    let mut cluster = TestCluster::start(3).await;
    let mut watch = Bin::spawn(
        WATCH,
        &cluster.endpoints(),
        &["--key", "/c/", "--prefix", "--dial-timeout", "1"],
    );
    watch
        .line_containing("watching every key under /c/", Duration::from_secs(10))
        .await;

    // Which member carries the watch stream is up to the client, so each member is killed in turn (one
    // at a time keeps a quorum of two), with writes before and after each kill: whichever member the
    // watcher uses, its stream breaks at least once, and the leader dies once too.
    let mut next = 0;
    let mut last = 0;
    for victim in 0..3 {
        let mut survivor = cluster.client_of((victim + 1) % 3).await;
        write(&mut survivor, &mut next, 10).await;
        cluster.kill(victim);
        last = write(&mut survivor, &mut next, 10).await;
        cluster.restart(victim).await;
    }

    // Wait until the watcher has printed the last write, then stop it.
    loop {
        let line = watch
            .line_containing("PUT /c/", Duration::from_secs(10))
            .await;
        if revision_in(&line) >= last {
            break;
        }
    }
    watch.signal(Signal::SIGINT);
    let out = watch.finish(Duration::from_secs(5)).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains("lost the connection to etcd"),
        "the watcher's member was killed at some point, so its stream broke: {out:#?}"
    );

    // Every revision etcd committed under /c/ (each key written once), read afterwards.
    let mut client = cluster.client_of(0).await;
    let history = client
        .get("/c/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let committed: BTreeSet<i64> = history.kvs().iter().map(|kv| kv.mod_revision()).collect();
    assert_eq!(committed.len(), history.kvs().len());

    let printed: Vec<i64> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("PUT /c/"))
        .map(revision_in)
        .collect();
    let unique: BTreeSet<i64> = printed.iter().copied().collect();
    assert_eq!(
        unique.len(),
        printed.len(),
        "a change printed twice: {out:#?}"
    );
    assert_eq!(unique, committed, "printed vs committed: {out:#?}");
}
