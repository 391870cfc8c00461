//! The TTL rows of docs/faults.md's bad-input table, through the real `lease` binary: refused before any
//! lease is granted, with one `error:` line and clap's exit code 2.

use test_etcd::{assert_refused, lease_ids, TestEtcd};

const LEASE: &str = env!("CARGO_BIN_EXE_lease");

async fn ttl_refused(ttl: &str, why: &str) {
    let etcd = TestEtcd::start().await;
    let out = assert_refused(LEASE, &etcd.endpoint(), &["--ttl", ttl], why).await;
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    let mut client = etcd.client().await;
    assert!(
        lease_ids(&mut client).await.is_empty(),
        "no lease was granted"
    );
}

#[tokio::test]
async fn a_ttl_of_zero_is_refused() {
    ttl_refused("0", "0 is not in 1..=9000000000").await;
}

#[tokio::test]
async fn a_negative_ttl_is_refused() {
    ttl_refused("-5", "-5 is not in 1..=9000000000").await;
}

#[tokio::test]
async fn an_absurdly_large_ttl_is_refused() {
    // One past etcd's MaxLeaseTTL (about 285 years); etcd would refuse it too, less clearly.
    ttl_refused("9000000001", "9000000001 is not in 1..=9000000000").await;
}
