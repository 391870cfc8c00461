//! The README's transcript is what `cargo run -p watch` really prints while another terminal writes
//! `name` twice and deletes it, then Ctrl-C: run it, do the same, and compare line by line.

use std::time::Duration;

use test_etcd::{delete, get_value, keys_under, put, Bin, Signal, TestEtcd, Transcript};

const WATCH: &str = env!("CARGO_BIN_EXE_watch");
const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn readme_transcript_matches_the_default_run() {
    let transcript =
        Transcript::from_readme(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"), "watch");
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(WATCH, &etcd.endpoint(), &transcript.arg_refs());
    bin.line_containing("watching", LIMIT).await;

    // The second terminal of the README: `etcdctl put name hello`, `put name world`, `del name`.
    put(&mut client, "name", "hello").await;
    put(&mut client, "name", "world").await;
    let deleted = delete(&mut client, "name").await;
    // Ctrl-C only once the last change is printed, as a reader would.
    bin.line_containing(&format!("DELETE name (revision {deleted})"), LIMIT)
        .await;
    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;

    assert!(out.status.success(), "{out:#?}");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    transcript.assert_matches(&out.stdout, &etcd.endpoint());

    // A watcher only reads: the delete stands, and it wrote nothing anywhere.
    assert_eq!(get_value(&mut client, "name").await, None);
    assert!(keys_under(&mut client, "").await.is_empty());
}
