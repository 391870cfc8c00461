//! The README's transcript is what `cargo run -p kv` really prints: run it and compare, line by line.

use std::time::Duration;

use test_etcd::{get_value, keys_under, Bin, TestEtcd, Transcript};

const KV: &str = env!("CARGO_BIN_EXE_kv");

#[tokio::test]
async fn readme_transcript_matches_the_default_run() {
    let transcript =
        Transcript::from_readme(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"), "kv");
    let etcd = TestEtcd::start().await;
    let out = Bin::run(
        KV,
        &etcd.endpoint(),
        &transcript.arg_refs(),
        Duration::from_secs(30),
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    transcript.assert_matches(&out.stdout, &etcd.endpoint());

    // What the README says the run leaves behind: `name`, and nothing under the demo prefix.
    let mut client = etcd.client().await;
    assert_eq!(
        get_value(&mut client, "name").await.as_deref(),
        Some("ferris")
    );
    assert!(keys_under(&mut client, "/kv-demo/").await.is_empty());
}
