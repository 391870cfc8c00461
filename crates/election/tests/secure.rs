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
