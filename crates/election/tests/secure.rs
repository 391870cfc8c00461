//! `election` against an etcd with TLS, client certificates and users (the harness's `SecureEtcd`), logged in
//! as the limited user `app`, whose role allows keys under /app/ only: the shared TLS and user flags
//! work here too, and the run leaves nothing under its prefix, read back as root.

use std::time::Duration;

use test_etcd::{keys_under, SecureEtcd};

const BIN: &str = env!("CARGO_BIN_EXE_election");

#[tokio::test]
async fn the_default_run_works_over_tls_as_a_user_limited_to_app() {
    let etcd = SecureEtcd::start().await;
    let out = etcd
        .run_as_app(BIN, &["--name", "/app/election"], Duration::from_secs(90))
        .await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains("nothing is left under /app/election/"),
        "{out:#?}"
    );
    let mut root = etcd.root_client().await;
    assert!(keys_under(&mut root, "/app/").await.is_empty(), "{out:#?}");
}

/// An observer logged in as `app` rides out an etcd restart, which throws every auth token away, and
/// prints the leader elected afterwards.
#[tokio::test]
async fn an_observer_logged_in_as_app_survives_an_etcd_restart() {
    let mut etcd = SecureEtcd::start().await;
    let limit = Duration::from_secs(20);
    let mut args = etcd.app_args();
    args.extend(
        ["--observe", "--name", "/app/election"]
            .iter()
            .map(|a| a.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut observer = test_etcd::Bin::spawn_with_env(
        BIN,
        &etcd.endpoint(),
        &args,
        &[("ETCD_PASSWORD", test_etcd::APP_PASSWORD)],
    );
    observer
        .line_containing("observing /app/election", limit)
        .await;

    etcd.etcd().restart().await;
    observer
        .line_containing("lost the observe stream", limit)
        .await;
    let mut root = etcd.root_client().await;
    let lease = root
        .lease_grant(30, None)
        .await
        .expect("root grants a lease")
        .id();
    root.campaign("/app/election", "r", lease)
        .await
        .expect("root campaigns");
    observer
        .line_containing("leader of /app/election is now r", limit)
        .await;
    observer.signal(test_etcd::Signal::SIGINT);
    let out = observer.finish(limit).await;
    assert!(out.status.success(), "{out:#?}");
    root.lease_revoke(lease)
        .await
        .expect("root revokes its lease");
}
