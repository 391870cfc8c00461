//! The harness itself: members are real, isolated, and survive restarts with their data.

use std::time::Duration;

use test_etcd::{eventually, get_value, TestEtcd};

#[tokio::test]
async fn two_members_are_isolated_and_never_on_the_default_port() {
    let a = TestEtcd::start().await;
    let b = TestEtcd::start().await;
    assert_ne!(a.endpoint(), b.endpoint());
    assert!(!a.endpoint().ends_with(":2379") && !b.endpoint().ends_with(":2379"));
    let mut ca = a.client().await;
    let mut cb = b.client().await;
    ca.put("only-in-a", "1", None).await.unwrap();
    assert_eq!(get_value(&mut cb, "only-in-a").await, None);
    assert_eq!(get_value(&mut ca, "only-in-a").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn restart_after_kill_keeps_data_and_endpoint() {
    let mut etcd = TestEtcd::start().await;
    let endpoint = etcd.endpoint();
    etcd.client().await.put("kept", "yes", None).await.unwrap();

    etcd.kill();
    let mut client = etcd.client().await;
    let down = tokio::time::timeout(Duration::from_secs(1), client.get("kept", None)).await;
    assert!(
        !matches!(down, Ok(Ok(_))),
        "a killed member must not answer"
    );

    etcd.restart().await;
    assert_eq!(etcd.endpoint(), endpoint);
    let mut client = etcd.client().await;
    assert_eq!(get_value(&mut client, "kept").await.as_deref(), Some("yes"));
}

#[tokio::test]
async fn eventually_returns_the_first_some() {
    let mut calls = 0;
    let got = eventually("third call", Duration::from_secs(5), || {
        calls += 1;
        let now = calls;
        async move { (now >= 3).then_some(now) }
    })
    .await;
    assert_eq!(got, 3);
}

#[tokio::test]
#[should_panic(expected = "timed out after")]
async fn eventually_panics_at_its_deadline() {
    eventually("never", Duration::from_millis(200), || async { None::<()> }).await;
}

#[test]
#[should_panic(expected = "etcd is not on PATH: run `scripts/install-deps.sh`")]
fn missing_etcd_fails_with_the_install_command() {
    let empty = tempfile::tempdir().unwrap();
    test_etcd::etcd_binary_in(Some(empty.path().as_os_str().to_owned()));
}

#[test]
fn etcd_is_found_on_path_here() {
    assert!(test_etcd::etcd_binary().ends_with("etcd"));
}

#[tokio::test]
async fn a_frozen_member_accepts_but_does_not_answer_until_thawed() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    client.put("k", "v", None).await.unwrap();

    etcd.freeze();
    let frozen = tokio::time::timeout(Duration::from_secs(1), client.get("k", None)).await;
    assert!(frozen.is_err(), "no answer while frozen: {frozen:?}");
    assert!(
        std::net::TcpStream::connect(etcd.endpoint()).is_ok(),
        "the kernel still accepts connections for it"
    );

    etcd.thaw();
    let value = eventually("the member answers again", Duration::from_secs(10), || {
        let mut client = client.clone();
        async move { get_value(&mut client, "k").await }
    })
    .await;
    assert_eq!(value, "v");
}
