//! The Go twin (`go/main.go`, etcd's own Go client, whose `KeepAlive` renews by itself) and the Rust topic
//! (which renews by hand), run against one etcd: the same steps, values and revisions aside, and both end by
//! revoking, so nothing is left.

use std::time::Duration;

use test_etcd::go::{assert_same_steps, build_go_twin};
use test_etcd::{get_value, lease_ids, Bin, TestEtcd};

const KEEPALIVE: &str = env!("CARGO_BIN_EXE_keepalive");
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_go_twin_and_the_rust_topic_print_the_same_steps_and_leave_nothing() {
    let go = build_go_twin("keepalive");
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;

    let go_out = Bin::run(
        go.to_str().expect("a UTF-8 path"),
        &etcd.endpoint(),
        &["--count", "2"],
        LIMIT,
    )
    .await;
    assert!(go_out.status.success(), "{go_out:#?}");
    assert_eq!(get_value(&mut client, "name").await, None);
    assert!(lease_ids(&mut client).await.is_empty());

    let rust_out = Bin::run(KEEPALIVE, &etcd.endpoint(), &["--count", "2"], LIMIT).await;
    assert!(rust_out.status.success(), "{rust_out:#?}");
    assert_eq!(get_value(&mut client, "name").await, None);
    assert!(lease_ids(&mut client).await.is_empty());

    assert_same_steps(&go_out.stdout, &rust_out.stdout);
    std::fs::remove_file(go).ok();
}
