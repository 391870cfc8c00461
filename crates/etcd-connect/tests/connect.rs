//! `connect` against a real etcd, and against a port where nothing listens.

use std::time::{Duration, Instant};

use clap::Parser;
use etcd_connect::{connect, ConnectArgs};
use test_etcd::{free_port, TestEtcd};

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

#[tokio::test]
async fn connects_to_a_live_member_and_the_client_works() {
    let etcd = TestEtcd::start().await;
    let endpoint = format!("http://{}", etcd.endpoint());
    let mut client = connect(&args(&["--endpoints", &endpoint])).await.unwrap();
    client.put("k", "v", None).await.unwrap();
    let resp = client.get("k", None).await.unwrap();
    assert_eq!(resp.kvs()[0].value(), b"v");
}

#[tokio::test]
async fn several_endpoints_are_accepted_when_one_answers() {
    let etcd = TestEtcd::start().await;
    let list = format!("{},{}", etcd.endpoint(), etcd.endpoint());
    let parsed = args(&["--endpoints", &list]);
    assert_eq!(parsed.endpoints.len(), 2);
    assert_eq!(parsed.endpoints_shown(), list);
    connect(&parsed).await.unwrap();
}

#[tokio::test]
async fn a_dead_port_fails_within_the_dial_timeout_and_says_what_to_do() {
    let dead = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let Err(err) = connect(&args(&["--endpoints", &dead, "--dial-timeout", "1"])).await else {
        panic!("connected although nothing listens at {dead}");
    };
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let message = format!("{err:#}");
    assert!(message.contains(&dead), "{message}");
    assert!(message.contains("connection refused"), "{message}");
    assert!(message.contains("scripts/etcd.sh up"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}

#[tokio::test]
async fn a_silent_listener_fails_within_the_dial_timeout() {
    // Accepts TCP connections but never speaks HTTP/2, like a wrong service on the port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let started = Instant::now();
    let Err(err) = connect(&args(&["--endpoints", &endpoint, "--dial-timeout", "1"])).await else {
        panic!("connected to a listener that is not etcd");
    };
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        format!("{err:#}").contains("did not answer as etcd"),
        "{err:#}"
    );
}
