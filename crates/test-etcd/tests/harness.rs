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
#[should_panic(expected = "TEST_ETCD_BIN=no/such/etcd names no etcd with etcdctl beside it")]
fn test_etcd_bin_pointing_nowhere_fails_with_what_to_do() {
    test_etcd::chosen_etcd_binary(std::ffi::OsStr::new("no/such/etcd"));
}

#[test]
fn test_etcd_bin_names_an_etcd_with_etcdctl_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["etcd", "etcdctl"] {
        std::fs::write(dir.path().join(name), "").unwrap();
    }
    let etcd = dir.path().join("etcd");
    assert_eq!(test_etcd::chosen_etcd_binary(etcd.as_os_str()), etcd);
}

#[test]
fn free_ports_are_below_the_ephemeral_range_where_no_connection_takes_them() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let ephemeral_start: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    for _ in 0..200 {
        let port = test_etcd::free_port();
        assert!(
            port < ephemeral_start,
            "{port} is in the ephemeral range {range}"
        );
        assert!(test_etcd::port_is_free(port) && test_etcd::port_is_free(port + 1));
    }
}

#[test]
fn a_connections_local_end_is_not_a_free_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let connection = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let local = connection.local_addr().unwrap().port();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", local)).is_err(),
        "nothing listens at {local}"
    );
    assert!(!test_etcd::port_is_free(local));
    // Closed, by our side first, it stays in TIME-WAIT for a minute, which still keeps etcd from binding it.
    drop(connection);
    drop(accepted);
    assert!(!test_etcd::port_is_free(local));
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
