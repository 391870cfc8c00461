//! The Go twin (`go/main.go`, etcd's own Go client and its `concurrency` package) and the Rust topic, run
//! against one etcd: the same steps, values and revisions aside (Go's and Rust's lock keys are the same:
//! `/lock/` and the lease ID in hex), and both leave nothing under `/lock/` and no lease.

use std::time::Duration;

use test_etcd::go::{assert_same_steps, build_go_twin};
use test_etcd::{keys_under, lease_ids, Bin, TestEtcd};

const LOCK: &str = env!("CARGO_BIN_EXE_lock");
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_go_twin_and_the_rust_topic_print_the_same_steps_and_leave_nothing() {
    let go = build_go_twin("lock");
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
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert!(lease_ids(&mut client).await.is_empty());

    let rust_out = Bin::run(LOCK, &etcd.endpoint(), &[], LIMIT).await;
    assert!(rust_out.status.success(), "{rust_out:#?}");
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert!(lease_ids(&mut client).await.is_empty());

    assert_same_steps(&go_out.stdout, &rust_out.stdout);
    std::fs::remove_file(go).ok();
}
