//! The Go twin (`go/main.go`, etcd's own Go client) and the Rust topic, run against one etcd: the same steps,
//! values and revisions aside, and the same key left behind.

use std::time::Duration;

use test_etcd::go::{assert_same_steps, build_go_twin};
use test_etcd::{get_value, keys_under, Bin, TestEtcd};

const KV: &str = env!("CARGO_BIN_EXE_kv");
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_go_twin_and_the_rust_topic_print_the_same_steps_and_leave_the_same_key() {
    let go = build_go_twin("kv");
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;

    let go_out = Bin::run(
        go.to_str().expect("a UTF-8 path"),
        &etcd.endpoint(),
        &[],
        LIMIT,
    )
    .await;
    assert!(go_out.status.success(), "{go_out:#?}");
    assert_eq!(
        get_value(&mut client, "name").await.as_deref(),
        Some("ferris")
    );

    let rust_out = Bin::run(KV, &etcd.endpoint(), &[], LIMIT).await;
    assert!(rust_out.status.success(), "{rust_out:#?}");
    assert_eq!(
        get_value(&mut client, "name").await.as_deref(),
        Some("ferris")
    );
    assert!(keys_under(&mut client, "/kv-demo/").await.is_empty());

    assert_same_steps(&go_out.stdout, &rust_out.stdout);
    std::fs::remove_file(go).ok();
}
