//! The README's transcript is what `cargo run -p secure -- ...` really prints against an etcd with TLS,
//! client certificates and users: run it and compare, line by line.

use std::time::Duration;

use test_etcd::{get_value, Bin, SecureEtcd, Transcript, APP_PASSWORD};

const SECURE: &str = env!("CARGO_BIN_EXE_secure");

/// Where the README's command finds its files: `scripts/etcd.sh up --secure` puts them there.
const README_CERTS: &str = ".etcd/secure/certs/";
const README_ENDPOINT: &str = "127.0.0.1:2479";

#[tokio::test]
async fn readme_transcript_matches_the_run_it_shows() {
    let transcript =
        Transcript::from_readme(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"), "secure");
    let etcd = SecureEtcd::start().await;
    let host_port = etcd.endpoint().trim_start_matches("https://").to_string();
    let certs = etcd.file("");
    // The README's paths and port, swapped for the test member's.
    let args: Vec<String> = transcript
        .args
        .iter()
        .map(|a| {
            a.replace(README_CERTS, &certs)
                .replace(README_ENDPOINT, &host_port)
        })
        .collect();
    assert!(
        args.iter().any(|a| a.starts_with(&certs)),
        "the README's command names files under {README_CERTS}: {:?}",
        transcript.args
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = Bin::spawn_with_env(
        SECURE,
        &etcd.endpoint(),
        &args,
        &[("ETCD_PASSWORD", APP_PASSWORD)],
    )
    .finish(Duration::from_secs(30))
    .await;
    assert!(out.status.success(), "{out:#?}");
    let shown = out
        .stdout
        .replace(&certs, README_CERTS)
        .replace(&host_port, README_ENDPOINT);
    transcript.assert_matches(&shown, "127.0.0.1:2379");

    // What the README says the run leaves behind: the greeting, and nothing outside /app/.
    let mut root = etcd.root_client().await;
    assert_eq!(
        get_value(&mut root, "/app/greeting").await.as_deref(),
        Some("hello from app")
    );
    assert_eq!(get_value(&mut root, "/config/feature-x").await, None);
}
