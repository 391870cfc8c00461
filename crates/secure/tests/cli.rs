//! The real `secure` binary against an etcd with TLS, client certificates and users, started by the
//! harness: what it prints, what it leaves in etcd, and the one line each mistake gets.

use std::time::Duration;

use test_etcd::{
    assert_clean_failure, assert_fails_fast_on_dead_endpoint, get_value, put, Bin, Output,
    SecureEtcd, APP_PASSWORD, ROOT_PASSWORD,
};

const SECURE: &str = env!("CARGO_BIN_EXE_secure");
const LIMIT: Duration = Duration::from_secs(20);

async fn run(etcd: &SecureEtcd, args: &[String], env: &[(&str, &str)]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Bin::spawn_with_env(SECURE, &etcd.endpoint(), &args, env)
        .finish(LIMIT)
        .await
}

#[tokio::test]
async fn the_five_steps_run_as_app() {
    let etcd = SecureEtcd::start().await;
    let out = run(&etcd, &etcd.app_args(), &[("ETCD_PASSWORD", APP_PASSWORD)]).await;
    assert!(out.status.success(), "{out:#?}");
    let mut root = etcd.root_client().await;
    assert_eq!(
        get_value(&mut root, "/app/greeting").await.as_deref(),
        Some("hello from app")
    );
    assert_eq!(get_value(&mut root, "/config/feature-x").await, None);
}

/// Everything the binary printed, both streams.
fn all(out: &Output) -> String {
    format!("{}\n{}", out.stdout, out.stderr)
}

#[tokio::test]
async fn the_password_never_appears_even_at_trace_level() {
    let etcd = SecureEtcd::start().await;
    let out = run(
        &etcd,
        &etcd.app_args(),
        // rustls named too: it is quiet unless RUST_LOG names it, and its handshake logs are where a
        // secret would most likely slip out.
        &[
            ("ETCD_PASSWORD", APP_PASSWORD),
            ("RUST_LOG", "trace,rustls=trace"),
        ],
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stderr.contains("DEBUG") && out.stderr.contains("TRACE"),
        "the run really logged at debug and trace: {}",
        &out.stderr[..out.stderr.len().min(2000)]
    );
    assert!(
        !all(&out).contains(APP_PASSWORD),
        "the password was printed"
    );
}

#[tokio::test]
async fn a_wrong_password_is_one_line_that_names_the_fix() {
    let etcd = SecureEtcd::start().await;
    let out = run(&etcd, &etcd.app_args(), &[("ETCD_PASSWORD", "wrong-pw-91")]).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr
            .contains("authentication failed, invalid user ID or password")
            && out.stderr.contains("ETCD_PASSWORD"),
        "{out:#?}"
    );
    assert!(
        !all(&out).contains("wrong-pw-91"),
        "the password was printed"
    );
}

#[tokio::test]
async fn no_password_and_no_terminal_says_where_the_password_comes_from() {
    let etcd = SecureEtcd::start().await;
    let out = run(&etcd, &etcd.app_args(), &[]).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr
            .contains("--user app needs a password: set ETCD_PASSWORD"),
        "{out:#?}"
    );
}

#[tokio::test]
async fn without_the_tls_flags_it_says_how_to_get_them() {
    let etcd = SecureEtcd::start().await;
    let out = run(&etcd, &[], &[]).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr
            .contains("needs --cacert, --cert, --key-file and --user")
            && out.stderr.contains("scripts/etcd.sh up --secure"),
        "{out:#?}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_fast_and_says_how_to_start_a_secure_etcd() {
    let etcd = SecureEtcd::start().await;
    let args = etcd.app_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = assert_fails_fast_on_dead_endpoint(SECURE, &args).await;
    assert!(
        out.stderr.contains("scripts/etcd.sh up --secure"),
        "{out:#?}"
    );
}

#[tokio::test]
async fn a_user_allowed_everywhere_is_told_so_and_nothing_it_did_not_write_is_touched() {
    let etcd = SecureEtcd::start().await;
    let mut root = etcd.root_client().await;
    // Someone else's key at the outside key: it must survive, unchanged.
    put(&mut root, "/config/feature-x", "theirs").await;
    let mut args = etcd.tls_args();
    args.extend(["--user".to_string(), "root".to_string()]);
    let out = run(&etcd, &args, &[("ETCD_PASSWORD", ROOT_PASSWORD)]).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr
            .contains("etcd allowed root to write /config/feature-x, outside /app/"),
        "{out:#?}"
    );
    assert_eq!(
        get_value(&mut root, "/config/feature-x").await.as_deref(),
        Some("theirs")
    );

    // And when the key did not exist, the run removes the one it created.
    let other = "/config/feature-y";
    args.extend(["--outside-key".to_string(), other.to_string()]);
    let out = run(&etcd, &args, &[("ETCD_PASSWORD", ROOT_PASSWORD)]).await;
    assert_clean_failure(&out);
    assert_eq!(get_value(&mut root, other).await, None, "{out:#?}");
}

#[tokio::test]
async fn an_outside_key_under_the_prefix_is_refused() {
    let etcd = SecureEtcd::start().await;
    let mut args = etcd.app_args();
    args.extend(["--outside-key".to_string(), "/app/x".to_string()]);
    let out = run(&etcd, &args, &[("ETCD_PASSWORD", APP_PASSWORD)]).await;
    assert_clean_failure(&out);
    assert!(out.stderr.contains("is under --prefix /app/"), "{out:#?}");
}

/// With no `ETCD_PASSWORD` and a terminal on stdin, the program asks, without echoing what is typed. A
/// pseudo-terminal comes from util-linux's `script`. The password is typed once the prompt shows and the
/// terminal's echo is off: rpassword prints the prompt first and turns echo off just after, so a test
/// that typed at the prompt at once would see its own keystrokes echoed by a terminal not yet told.
#[tokio::test]
async fn on_a_terminal_it_asks_for_the_password_without_echoing_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let etcd = SecureEtcd::start().await;
    let mut command = vec![SECURE.to_string()];
    command.extend(etcd.app_args());
    let mut child = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c", &command.join(" "), "/dev/null"])
        .env("ETCD_ENDPOINTS", etcd.endpoint())
        .env_remove("ETCD_PASSWORD")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("util-linux `script` runs (Debian: bsdutils)");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stdin = child.stdin.take().expect("piped");
    let mut seen = Vec::new();
    let prompt = "password for etcd user app: ";
    tokio::time::timeout(LIMIT, async {
        let mut chunk = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains(prompt) {
            let n = stdout.read(&mut chunk).await.expect("read the terminal");
            assert!(
                n > 0,
                "the terminal closed before the prompt: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the prompt shows");
    let script_pid = child.id().expect("script is running");
    test_etcd::eventually("the terminal's echo is off", LIMIT, || async move {
        (terminal_echo(script_pid) == Some(false)).then_some(())
    })
    .await;
    stdin
        .write_all(format!("{APP_PASSWORD}\n").as_bytes())
        .await
        .expect("type the password");
    tokio::time::timeout(LIMIT, stdout.read_to_end(&mut seen))
        .await
        .expect("the run ends")
        .expect("read the terminal");
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("script exits")
        .expect("script's status");
    let shown = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{status:?}: {shown}");
    assert!(shown.contains("2. logged in as app"), "{shown}");
    assert!(
        !shown.contains(APP_PASSWORD),
        "the password was echoed: {shown}"
    );
}

/// Whether the terminal of `script`'s child (the pseudo-terminal the program reads from) echoes input.
/// `None` while that cannot be read yet.
fn terminal_echo(script_pid: u32) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let children =
        std::fs::read_to_string(format!("/proc/{script_pid}/task/{script_pid}/children")).ok()?;
    let child: u32 = children.split_whitespace().next()?.parse().ok()?;
    let terminal = std::fs::File::open(format!("/proc/{child}/fd/0")).ok()?;
    // SAFETY: `termios` is plain data that tcgetattr fills in; the descriptor is open for the call.
    let mut settings: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(terminal.as_raw_fd(), &mut settings) } != 0 {
        return None;
    }
    Some(settings.c_lflag & libc::ECHO != 0)
}
