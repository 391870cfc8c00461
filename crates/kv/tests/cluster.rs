//! The real `kv` binary against a 3-member cluster whose leader is dead, with all three endpoints given.

use std::time::Duration;

use etcd_client::GetOptions;
use test_etcd::{get_value, Bin, TestCluster};

const KV: &str = env!("CARGO_BIN_EXE_kv");

#[tokio::test]
async fn kv_works_with_the_leader_of_three_members_down() {
    let mut cluster = TestCluster::start(3).await;
    let dead = cluster.leader().await;
    cluster.kill(dead);
    // The two survivors elect a new leader within about a second. Waiting for it keeps this test about
    // the dead member in the endpoint list; what a request does during the election itself is etcd's
    // business (it may refuse a write it cannot propose yet).
    let survivor = cluster.leader().await;

    let out = Bin::run(
        KV,
        &cluster.endpoints(),
        &["--dial-timeout", "2"],
        Duration::from_secs(15),
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout
            .contains("6. deleted the 3 keys this run created under /kv-demo/"),
        "{out:#?}"
    );
    assert!(
        !out.stderr.lines().any(|l| l.starts_with("error:")) && !out.stderr.contains("panicked"),
        "{out:#?}"
    );

    // What kv says it did is what the cluster holds.
    let mut client = cluster.client_of(survivor).await;
    assert_eq!(
        get_value(&mut client, "name").await.as_deref(),
        Some("ferris")
    );
    let demo = client
        .get("/kv-demo/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(demo.count(), 0, "the demo keys are deleted at the end");
}
