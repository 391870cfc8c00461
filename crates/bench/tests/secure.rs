//! `bench put` against an etcd with TLS, client certificates and users (the harness's `SecureEtcd`), logged
//! in as the limited user `app`, whose role allows keys under /app/ only: the shared TLS and user flags work
//! for a subcommand too, and the run deletes what it wrote, read back as root.

use std::time::Duration;

use test_etcd::{keys_under, Bin, SecureEtcd, APP_PASSWORD};

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

#[tokio::test]
async fn put_works_over_tls_as_a_user_limited_to_app() {
    let etcd = SecureEtcd::start().await;
    let mut args = vec!["put".to_string()];
    args.extend(etcd.app_args());
    args.extend(
        [
            "--total",
            "200",
            "--clients",
            "4",
            "--prefix",
            "/app/bench/",
        ]
        .iter()
        .map(|a| a.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = Bin::spawn_with_env(
        BENCH,
        &etcd.endpoint(),
        &args,
        &[("ETCD_PASSWORD", APP_PASSWORD)],
    )
    .finish(Duration::from_secs(60))
    .await;
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stdout.contains("Summary:"), "{out:#?}");
    let mut root = etcd.root_client().await;
    assert!(keys_under(&mut root, "/app/").await.is_empty(), "{out:#?}");
}
