//! `connect` against a real 3-member cluster whose leader dies while the client is in use.

use std::time::Duration;

use clap::Parser;
use etcd_connect::{connect, ConnectArgs};
use test_etcd::{eventually, TestCluster};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
}

fn args(argv: &[&str]) -> ConnectArgs {
    Cli::try_parse_from(std::iter::once("test").chain(argv.iter().copied()))
        .expect("valid arguments")
        .connect
}

/// Makes `n` puts in a row, each bounded by a second; true if all of them succeed.
async fn puts_in_a_row(client: &mut etcd_client::Client, round: u32, n: usize) -> bool {
    for i in 0..n {
        let key = format!("after-kill/{round}/{i}");
        let put = client.put(key, "v", None);
        if !matches!(
            tokio::time::timeout(Duration::from_secs(1), put).await,
            Ok(Ok(_))
        ) {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn puts_keep_succeeding_when_the_leader_is_killed() {
    let mut cluster = TestCluster::start(3).await;
    let endpoints = cluster.endpoints();
    let mut client = connect(&args(&["--endpoints", &endpoints, "--dial-timeout", "1"]))
        .await
        .unwrap_or_else(|e| panic!("{endpoints}: {e:#}"));
    assert!(puts_in_a_row(&mut client, 0, 5).await, "all members up");

    let leader = cluster.leader().await;
    cluster.kill(leader);

    // The two survivors elect a new leader within about a second, and connect's background task takes
    // the dead member out of the client within a few more; from then on every put works.
    let mut round = 0;
    eventually(
        &format!(
            "20 puts in a row succeed with member {} (the leader) dead",
            cluster.endpoint(leader)
        ),
        Duration::from_secs(15),
        || {
            round += 1;
            let mut client = client.clone();
            let round = round;
            async move { puts_in_a_row(&mut client, round, 20).await.then_some(()) }
        },
    )
    .await;
    // And it stays that way. A plain etcd-client over the same three endpoints fails about a quarter of
    // its requests here (it keeps sending some to the dead member), so 20 in a row can happen by luck
    // with it; 100 more in a row cannot.
    assert!(
        puts_in_a_row(&mut client, round + 1, 100).await,
        "a put failed after the cluster had recovered"
    );
}
