//! `watch` against an etcd with TLS, client certificates and users: it logs in as the limited user `app`
//! and keeps printing changes after its auth token has expired, and after an etcd restart has thrown
//! every token away; a watch its roles do not allow is still refused.

use std::time::Duration;

use test_etcd::{assert_clean_failure, put, Bin, SecureEtcd, APP_PASSWORD};

const WATCH: &str = env!("CARGO_BIN_EXE_watch");
const LIMIT: Duration = Duration::from_secs(20);
/// etcd's auth token lifetime in this test, in seconds (the default is 300).
const TOKEN_TTL: u64 = 2;

#[tokio::test]
async fn a_watch_keeps_working_past_the_auth_token_ttl_and_a_restart() {
    let mut etcd = SecureEtcd::start_with(&[&format!("--auth-token-ttl={TOKEN_TTL}")]).await;
    let mut args = etcd.app_args();
    args.extend(["--key".to_string(), "/app/name".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut bin = Bin::spawn_with_env(
        WATCH,
        &etcd.endpoint(),
        &args,
        &[("ETCD_PASSWORD", APP_PASSWORD)],
    );
    bin.line_containing("watching /app/name", LIMIT).await;

    let mut root = etcd.root_client().await;
    put(&mut root, "/app/name", "before").await;
    bin.line_containing("PUT /app/name = before", LIMIT).await;

    // The token the watch logged in with expires TOKEN_TTL seconds after its last use. Waiting out that
    // time is the condition itself, not a guess that something happened.
    tokio::time::sleep(Duration::from_secs(TOKEN_TTL * 2)).await;
    put(&mut root, "/app/name", "after-ttl").await;
    bin.line_containing("PUT /app/name = after-ttl", LIMIT)
        .await;

    // A restart forgets every token: resuming the watch needs a new login, which the automatic token
    // refresh does.
    etcd.etcd().restart().await;
    bin.line_containing("resumed from revision", LIMIT).await;
    let mut root = etcd.root_client().await;
    put(&mut root, "/app/name", "after-restart").await;
    bin.line_containing("PUT /app/name = after-restart", LIMIT)
        .await;

    bin.signal(test_etcd::Signal::SIGINT);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
}

#[tokio::test]
async fn a_watch_outside_the_users_roles_is_refused_after_one_fresh_login() {
    // etcd 3.5 answers a watch with an auth token it no longer knows with "permission denied", the same
    // words as for a key the user may not read: watch logs in again once, and refuses what is denied
    // again, instead of retrying for ever.
    let etcd = SecureEtcd::start().await;
    let out = etcd
        .run_as_app(WATCH, &["--key", "/outside/name"], LIMIT)
        .await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains("watch on /outside/name") && out.stderr.contains("permission denied"),
        "{out:#?}"
    );
}
