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
    let Err(err) = connect(&args(&["--endpoints", &endpoint, "--dial-timeout", "2"])).await else {
        panic!("connected to a listener that is not etcd");
    };
    // Within the dial timeout itself: finding out why (a TCP connect, a TLS hello that gets no answer
    // either) once took up to 2 s more.
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?} with --dial-timeout 2"
    );
    assert!(
        format!("{err:#}").contains("did not answer as etcd"),
        "{err:#}"
    );
}

/// Puts and reads back `n` keys, each bounded, and returns how many worked.
async fn working_requests(client: &mut etcd_client::Client, n: usize) -> usize {
    let mut ok = 0;
    for i in 0..n {
        let key = format!("probe-{i}");
        let put =
            tokio::time::timeout(Duration::from_secs(3), client.put(key.as_str(), "v", None)).await;
        let get =
            tokio::time::timeout(Duration::from_secs(3), client.get(key.as_str(), None)).await;
        if matches!(put, Ok(Ok(_))) && matches!(get, Ok(Ok(_))) {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn a_dead_member_in_the_endpoint_list_is_skipped_in_either_order() {
    let etcd = TestEtcd::start().await;
    let dead = format!("127.0.0.1:{}", free_port());
    for list in [
        format!("{dead},{}", etcd.endpoint()),
        format!("{},{dead}", etcd.endpoint()),
    ] {
        let started = Instant::now();
        let mut client = connect(&args(&["--endpoints", &list, "--dial-timeout", "2"]))
            .await
            .unwrap_or_else(|e| panic!("{list}: {e:#}"));
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(working_requests(&mut client, 20).await, 20, "{list}");
    }
}

#[tokio::test]
async fn a_frozen_member_in_the_endpoint_list_is_skipped_within_the_dial_timeout() {
    let live = TestEtcd::start().await;
    let frozen = TestEtcd::start().await;
    frozen.freeze();
    let list = format!("{},{}", frozen.endpoint(), live.endpoint());
    let started = Instant::now();
    let mut client = connect(&args(&["--endpoints", &list, "--dial-timeout", "2"]))
        .await
        .unwrap();
    // The frozen member's probe, finding out why included, ends within the dial timeout.
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?} with --dial-timeout 2"
    );
    assert_eq!(working_requests(&mut client, 10).await, 10);
    frozen.thaw();
}

#[tokio::test]
async fn a_member_that_dies_later_is_taken_out_of_the_client() {
    // Two independent members stand in for two members of a cluster: what is checked is only that
    // requests stop going to the one that died.
    let a = TestEtcd::start().await;
    let mut b = TestEtcd::start().await;
    let list = format!("{},{}", a.endpoint(), b.endpoint());
    let client = connect(&args(&["--endpoints", &list, "--dial-timeout", "1"]))
        .await
        .unwrap();
    b.kill();
    test_etcd::eventually(
        "every request works again without b",
        Duration::from_secs(20),
        || {
            let mut client = client.clone();
            async move { (working_requests(&mut client, 10).await == 10).then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn every_member_dead_names_each_and_says_what_to_do() {
    let one = format!("127.0.0.1:{}", free_port());
    let two = format!("127.0.0.1:{}", free_port());
    let list = format!("{one},{two}");
    let started = Instant::now();
    let Err(err) = connect(&args(&["--endpoints", &list, "--dial-timeout", "1"])).await else {
        panic!("connected although nothing listens");
    };
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let message = format!("{err:#}");
    assert!(
        message.contains(&format!("{one}: connection refused")),
        "{message}"
    );
    assert!(
        message.contains(&format!("{two}: connection refused")),
        "{message}"
    );
    assert!(message.contains("scripts/etcd.sh up"), "{message}");
}

#[tokio::test]
async fn a_request_over_etcds_limit_is_explained_in_one_line() {
    let etcd = TestEtcd::start_with(&["--max-request-bytes=1024"]).await;
    let mut client = connect(&args(&["--endpoints", &etcd.endpoint()]))
        .await
        .unwrap();
    let err = client.put("big", "x".repeat(4096), None).await.unwrap_err();
    let line = recipes::errors::explain(&err);
    assert!(line.starts_with("request is too large: "), "{line}");
    assert!(
        line.contains("--max-request-bytes, 1.5 MiB by default"),
        "{line}"
    );
    assert!(!line.contains("grpc") && !line.contains('\n'), "{line}");

    let wrapped = anyhow::Error::new(err).context("put big");
    let reported = recipes::errors::one_line(&wrapped);
    assert!(
        reported.starts_with("put big: request is too large: "),
        "{reported}"
    );
}

/// A client of `etcd`, after it put five 1 MB values under /big/: more than etcd-client's default 4 MiB
/// reply limit in one read of the prefix, or one replay of its history.
async fn five_megabytes_under_big(etcd: &TestEtcd) -> etcd_client::Client {
    let mut client = connect(&args(&["--endpoints", &etcd.endpoint()]))
        .await
        .unwrap();
    let big = "x".repeat(1024 * 1024);
    for i in 0..5 {
        client
            .put(format!("/big/{i}"), big.as_str(), None)
            .await
            .unwrap();
    }
    client
}

#[tokio::test]
async fn a_reply_over_the_clients_message_limit_is_explained() {
    let etcd = TestEtcd::start().await;
    let mut client = five_megabytes_under_big(&etcd).await;
    let err = client
        .get("/big/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap_err();
    let line = recipes::errors::explain(&err);
    assert!(
        line.contains("over the client's 4 MiB message limit"),
        "{line}"
    );
    assert!(line.contains("get_prefix_in_pages"), "{line}");
}

/// A watch's replay of history meets the same limit (etcd packs up to 1,000 revisions in one response):
/// the advice names the watch's way out too, and states the limit the client really had.
#[tokio::test]
async fn a_watch_reply_over_the_message_limit_is_explained_for_watches() {
    let etcd = TestEtcd::start().await;
    let client = five_megabytes_under_big(&etcd).await;
    let options = || {
        Some(
            etcd_client::WatchOptions::new()
                .with_prefix()
                .with_start_revision(1),
        )
    };
    // etcd-client's default 4 MiB, then a limit raised to 2 MiB: both too small for the 5 MB replay.
    for (mut watch_client, limit) in [
        (
            client.watch_client(),
            "over the client's 4 MiB message limit",
        ),
        (
            client.watch_client().max_decoding_message_size(2 << 20),
            "over the client's message limit",
        ),
    ] {
        let mut stream = watch_client.watch("/big/", options()).await.unwrap();
        let err = loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without the replay"),
                Err(e) => break e,
            }
        };
        let line = recipes::errors::explain(&err);
        assert!(line.contains(limit), "{line}");
        assert!(
            line.contains("client.watch_client().max_decoding_message_size(..)"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_stopped_server_is_explained_with_what_to_do() {
    let mut etcd = TestEtcd::start().await;
    let mut client = connect(&args(&["--endpoints", &etcd.endpoint()]))
        .await
        .unwrap();
    etcd.stop();
    let err = client.get("k", None).await.unwrap_err();
    let line = recipes::errors::explain(&err);
    assert!(line.contains("scripts/etcd.sh up"), "{line}");
    assert!(!line.contains("grpc request error"), "{line}");
}

#[test]
fn a_negative_dial_timeout_gets_the_range_error() {
    let err = Cli::try_parse_from(["test", "--dial-timeout", "-1"])
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("must be more than 0"), "{text}");
    assert!(!text.contains("unexpected argument"), "{text}");
}
