//! [`TestCluster`]: a real 3-member etcd cluster on loopback, the harness for the cluster fault tests.

use std::time::Duration;

use etcd_client::{Client, GetOptions};
use test_etcd::{eventually, put, TestCluster};

/// `key` as member `i` alone has it in its own store (a serializable read: no round trip to the leader),
/// or `None` if it does not answer within a second.
async fn local_value(client: &mut Client, key: &str) -> Option<String> {
    let read = client.get(key, Some(GetOptions::new().with_serializable()));
    let resp = tokio::time::timeout(Duration::from_secs(1), read)
        .await
        .ok()?
        .ok()?;
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

#[tokio::test]
async fn a_cluster_of_three_elects_a_leader_and_replicates() {
    let cluster = TestCluster::start(3).await;
    assert_eq!(cluster.endpoints().split(',').count(), 3);

    let leader = cluster.leader().await;
    let mut client = cluster.client().await;
    let members = client.member_list().await.unwrap();
    assert_eq!(members.members().len(), 3, "{:?}", members.members());

    // Written through the leader; every member, asked alone, then holds it in its own store.
    let mut to_leader = cluster.client_of(leader).await;
    put(&mut to_leader, "replicated", "yes").await;
    for i in 0..3 {
        let mut alone = cluster.client_of(i).await;
        eventually(
            &format!("member {i} has the write in its own store"),
            Duration::from_secs(5),
            || {
                let mut alone = alone.clone();
                async move {
                    local_value(&mut alone, "replicated")
                        .await
                        .filter(|v| v == "yes")
                }
            },
        )
        .await;
        // And a linearizable read from any member returns it too.
        assert_eq!(
            test_etcd::get_value(&mut alone, "replicated")
                .await
                .as_deref(),
            Some("yes")
        );
    }
}

#[tokio::test]
async fn a_killed_member_restarts_and_rejoins() {
    let mut cluster = TestCluster::start(3).await;
    // Killing the leader is the harder case: the other two must elect a new one before they take writes.
    let dead = cluster.leader().await;
    cluster.kill(dead);
    assert!(!cluster.is_running(dead));

    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, dead);
    let mut survivor = cluster.client_of(new_leader).await;
    let mut last = 0;
    for i in 0..10 {
        last = put(&mut survivor, &format!("while-down/{i}"), &i.to_string()).await;
    }

    cluster.restart(dead).await;
    let mut rejoined = cluster.client_of(dead).await;
    // Straight from the restarted member's own store: it caught up with what it missed.
    let resp = rejoined
        .get(
            "while-down/",
            Some(GetOptions::new().with_prefix().with_serializable()),
        )
        .await
        .unwrap();
    assert_eq!(resp.kvs().len(), 10, "{:?}", resp.kvs());
    assert!(resp.header().unwrap().revision() >= last);
    assert_eq!(
        test_etcd::get_value(&mut rejoined, "while-down/9")
            .await
            .as_deref(),
        Some("9")
    );
    // It takes writes again too.
    put(&mut rejoined, "after-restart", "ok").await;
}
