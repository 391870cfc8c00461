//! `kv` against an etcd with TLS, client certificates and users: the shared TLS and user flags work here
//! too, and the store holds what the run says, read back as root.

use std::time::Duration;

use test_etcd::{get_value, keys_under, Bin, Output, SecureEtcd};

const KV: &str = env!("CARGO_BIN_EXE_kv");

/// kv as the limited user `app`, with `more` flags.
async fn kv_as_app(etcd: &SecureEtcd, more: &[&str]) -> Output {
    etcd.run_as_app(KV, more, Duration::from_secs(30)).await
}

#[tokio::test]
async fn kv_runs_over_tls_as_the_limited_user_under_its_prefix() {
    let etcd = SecureEtcd::start().await;
    let out = kv_as_app(
        &etcd,
        &["--key", "/app/name", "--demo-prefix", "/app/kv-demo/"],
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stdout.contains("1. put /app/name = ferris"), "{out:#?}");
    let mut root = etcd.root_client().await;
    assert_eq!(
        get_value(&mut root, "/app/name").await.as_deref(),
        Some("ferris")
    );
    assert!(keys_under(&mut root, "/app/kv-demo/").await.is_empty());
}

#[tokio::test]
async fn kv_outside_the_users_prefix_is_one_line_about_roles() {
    let etcd = SecureEtcd::start().await;
    // The default key `name` is outside /app/. (The demo prefix is inside it: kv checks that the prefix
    // is empty before its first write, and this test is about that write.)
    let out = kv_as_app(&etcd, &["--demo-prefix", "/app/kv-demo/"]).await;
    test_etcd::assert_clean_failure(&out);
    assert!(
        out.stderr
            .contains("put name: permission denied: the user's roles do not grant this key"),
        "{out:#?}"
    );
    let mut root = etcd.root_client().await;
    assert_eq!(get_value(&mut root, "name").await, None);
}

#[tokio::test]
async fn plain_http_to_a_tls_etcd_says_to_use_https() {
    let etcd = SecureEtcd::start().await;
    let plain = etcd.endpoint().replace("https://", "http://");
    let out = Bin::run(
        KV,
        &plain,
        &["--dial-timeout", "3"],
        Duration::from_secs(30),
    )
    .await;
    test_etcd::assert_clean_failure(&out);
    assert!(out.stderr.contains("speaks TLS: use https://"), "{out:#?}");
}
