//! `connect` against an etcd with TLS, client certificates and auth, started by the harness; and the one
//! line each TLS or login mistake gets.

use std::time::Duration;

use clap::Parser;
use etcd_connect::{connect, ConnectArgs};
use recipes::errors::one_line;
use test_etcd::{SecureEtcd, APP_PASSWORD, APP_PREFIX, APP_USER};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
}

fn args(argv: &[String]) -> ConnectArgs {
    Cli::try_parse_from(std::iter::once("test".to_string()).chain(argv.iter().cloned()))
        .expect("valid arguments")
        .connect
}

/// `--endpoints E --dial-timeout 3` plus `more`, logged in as `app` when `password` is given.
fn app(endpoint: &str, more: &[String], password: Option<&str>) -> ConnectArgs {
    let mut argv = vec![
        "--endpoints".to_string(),
        endpoint.to_string(),
        "--dial-timeout".into(),
        "3".into(),
    ];
    argv.extend(more.iter().cloned());
    let parsed = args(&argv);
    match password {
        Some(p) => ConnectArgs {
            secure: parsed.secure.with_user(APP_USER, p),
            ..parsed
        },
        None => parsed,
    }
}

/// `--cacert CA --cert CERT --key-file KEY`.
fn tls(ca: String, cert: String, key: String) -> Vec<String> {
    vec![
        "--cacert".to_string(),
        ca,
        "--cert".into(),
        cert,
        "--key-file".into(),
        key,
    ]
}

/// The error `connect` gives, as the one line a topic prints, within the dial timeout (plus slack).
async fn refusal(args: ConnectArgs) -> String {
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(8), connect(&args))
        .await
        .expect("connect gives up within the dial timeout");
    let Err(e) = outcome else {
        panic!("connect succeeded with {args:?}");
    };
    let line = one_line(&e);
    eprintln!("({:?}) {line}\n{e:?}", started.elapsed());
    assert!(!line.contains('\n'));
    line
}

#[tokio::test]
async fn tls_with_a_client_certificate_and_a_password_connects_and_writes_under_the_prefix() {
    let etcd = SecureEtcd::start().await;
    let mut client = connect(&app(&etcd.endpoint(), &etcd.tls_args(), Some(APP_PASSWORD)))
        .await
        .expect("connects as app");
    let key = format!("{APP_PREFIX}greeting");
    client
        .put(key.as_str(), "hello", None)
        .await
        .expect("app may write under /app/");
    let got = client.get(key.as_str(), None).await.expect("and read");
    assert_eq!(got.kvs()[0].value(), b"hello");
}

#[tokio::test]
async fn a_write_outside_the_prefix_is_permission_denied() {
    let etcd = SecureEtcd::start().await;
    let mut client = connect(&app(&etcd.endpoint(), &etcd.tls_args(), Some(APP_PASSWORD)))
        .await
        .expect("connects as app");
    let err = client
        .put("/other/key", "x", None)
        .await
        .expect_err("outside /app/");
    let line = recipes::errors::explain(&err);
    eprintln!("{line}");
    assert!(line.starts_with("permission denied: "), "{line}");
    assert!(line.contains("role"), "{line}");
    let mut root = etcd.root_client().await;
    let left = root
        .get("/other/key", None)
        .await
        .expect("root reads anything");
    assert!(left.kvs().is_empty(), "the refused write left nothing");
}

#[tokio::test]
async fn the_wrong_ca_is_named() {
    let etcd = SecureEtcd::start().await;
    let more = tls(
        etcd.other_file("ca.crt"),
        etcd.file("client.crt"),
        etcd.file("client.key"),
    );
    let line = refusal(app(&etcd.endpoint(), &more, Some(APP_PASSWORD))).await;
    assert!(line.contains("not signed by the CA in --cacert"), "{line}");
    assert!(line.contains(&etcd.other_file("ca.crt")), "{line}");
}

#[tokio::test]
async fn a_missing_certificate_file_is_named() {
    let etcd = SecureEtcd::start().await;
    let more = tls(
        etcd.file("ca.crt"),
        "/nonexistent/client.crt".to_string(),
        etcd.file("client.key"),
    );
    let line = refusal(app(&etcd.endpoint(), &more, Some(APP_PASSWORD))).await;
    assert!(
        line.contains("cannot read --cert /nonexistent/client.crt: no such file"),
        "{line}"
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let etcd = SecureEtcd::start().await;
    let more = tls(
        etcd.file("ca.crt"),
        etcd.other_file("client.crt"),
        etcd.other_file("client.key"),
    );
    let line = refusal(app(&etcd.endpoint(), &more, Some(APP_PASSWORD))).await;
    assert!(
        line.contains("does not trust the client certificate"),
        "{line}"
    );
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let etcd = SecureEtcd::start().await;
    let more = vec!["--cacert".to_string(), etcd.file("ca.crt")];
    let line = refusal(app(&etcd.endpoint(), &more, Some(APP_PASSWORD))).await;
    assert!(line.contains("requires a client certificate"), "{line}");
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let etcd = SecureEtcd::start().await;
    let line = refusal(app(
        &etcd.endpoint(),
        &etcd.tls_args(),
        Some("not-the-password"),
    ))
    .await;
    assert!(line.contains("authentication failed"), "{line}");
    assert!(line.contains("ETCD_PASSWORD"), "{line}");
    assert!(!line.contains("not-the-password"), "{line}");
}

#[tokio::test]
async fn https_without_cacert_is_refused_before_connecting() {
    let etcd = SecureEtcd::start().await;
    let line = refusal(app(&etcd.endpoint(), &[], None)).await;
    assert!(line.contains("also pass --cacert"), "{line}");
}

#[tokio::test]
async fn http_to_a_tls_etcd_says_it_speaks_tls() {
    let etcd = SecureEtcd::start().await;
    let plain = etcd.endpoint().replace("https://", "http://");
    let line = refusal(app(&plain, &[], None)).await;
    assert!(line.contains("speaks TLS"), "{line}");
    assert!(line.contains(&etcd.endpoint()), "{line}");
}
