//! The Go twin (`go/main.go`, etcd's own Go client) and the Rust topic, run against one etcd: the same steps,
//! values and revisions aside, and each leaves `name` on a lease of its own.

use std::time::Duration;

use test_etcd::go::{assert_same_steps, build_go_twin};
use test_etcd::{get_value, lease_of, Bin, TestEtcd};

const LEASE: &str = env!("CARGO_BIN_EXE_lease");
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_go_twin_and_the_rust_topic_print_the_same_steps_and_leave_name_on_a_lease() {
    let go = build_go_twin("lease");
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;

    let go_out = Bin::run(
        go.to_str().expect("a UTF-8 path"),
        &etcd.endpoint(),
        &["--ttl", "20"],
        LIMIT,
    )
    .await;
    assert!(go_out.status.success(), "{go_out:#?}");
    let go_lease = on_a_lease(&mut client).await;
    // The Rust topic refuses a key it did not create: end the Go twin's lease, and its key with it.
    client
        .lease_revoke(go_lease)
        .await
        .expect("revoke the Go twin's lease");

    let rust_out = Bin::run(
        LEASE,
        &etcd.endpoint(),
        &["--ttl", "20", "--no-wait"],
        LIMIT,
    )
    .await;
    assert!(rust_out.status.success(), "{rust_out:#?}");
    let rust_lease = on_a_lease(&mut client).await;
    assert_ne!(go_lease, rust_lease);

    assert_same_steps(&go_out.stdout, &rust_out.stdout);
    std::fs::remove_file(go).ok();
}

/// `name` = ferris, on a lease that lives: its ID.
async fn on_a_lease(client: &mut etcd_client::Client) -> i64 {
    assert_eq!(get_value(client, "name").await.as_deref(), Some("ferris"));
    let lease = lease_of(client, "name").await.expect("name is on a lease");
    let ttl = client
        .lease_time_to_live(lease, None)
        .await
        .expect("ask the lease's TTL")
        .ttl();
    assert!((1..=20).contains(&ttl), "the lease has {ttl}s left");
    lease
}
