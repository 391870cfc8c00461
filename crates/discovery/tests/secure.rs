//! `discovery` against an etcd with TLS, client certificates and users (the harness's `SecureEtcd`), logged in
//! as the limited user `app`, whose role allows keys under /app/ only: the shared TLS and user flags
//! work here too, and the run leaves nothing under its prefix, read back as root.

use std::time::Duration;

use test_etcd::{keys_under, SecureEtcd};

const BIN: &str = env!("CARGO_BIN_EXE_discovery");

#[tokio::test]
async fn the_default_run_works_over_tls_as_a_user_limited_to_app() {
    let etcd = SecureEtcd::start().await;
    let out = etcd
        .run_as_app(BIN, &["--prefix", "/app/services"], Duration::from_secs(90))
        .await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout
            .contains("done: 0 key(s) left under /app/services/demo/"),
        "{out:#?}"
    );
    let mut root = etcd.root_client().await;
    assert!(keys_under(&mut root, "/app/").await.is_empty(), "{out:#?}");
}

/// A watcher logged in as `app` rides out an etcd restart, which throws every auth token away: the
/// client logs in again (etcd-client's automatic token refresh, which the shared connect turns on), and
/// the watcher prints the instance registered meanwhile.
#[tokio::test]
async fn the_watcher_logs_in_again_after_an_etcd_restart() {
    let mut etcd = SecureEtcd::start().await;
    let mut args = etcd.app_args();
    args.extend(
        [
            "watch",
            "--service",
            "api",
            "--prefix",
            "/app/services",
            "--dial-timeout",
            "2",
        ]
        .iter()
        .map(|a| a.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut watch = test_etcd::Bin::spawn_with_env(
        BIN,
        &etcd.endpoint(),
        &args,
        &[("ETCD_PASSWORD", test_etcd::APP_PASSWORD)],
    );
    let limit = Duration::from_secs(20);
    watch
        .line_containing("2. watching /app/services/api/", limit)
        .await;

    etcd.etcd().restart().await;
    let mut root = etcd.root_client().await;
    test_etcd::put(&mut root, "/app/services/api/b", "127.0.0.1:8002").await;
    watch
        .line_containing("instances of api: [b=127.0.0.1:8002]", limit)
        .await;
    watch.signal(test_etcd::Signal::SIGINT);
    let out = watch.finish(limit).await;
    assert!(out.status.success(), "{out:#?}");
}
