//! What every etcd-by-example topic shares, and nothing more:
//!
//! - [`ConnectArgs`]: the `--endpoints` / `ETCD_ENDPOINTS` and `--dial-timeout` flags, which each topic
//!   flattens into its own clap arguments;
//! - [`connect`]: builds an [`etcd_client::Client`] and proves that etcd answers, failing fast with a message
//!   that says where it tried and what to do;
//! - [`init`]: `RUST_LOG`-driven logging, quiet by default, and Unix behaviour for `| head`;
//! - [`Shutdown`]: waits for Ctrl-C or SIGTERM, so long-running topics can release what they hold;
//! - [`report`]: the one error exit every binary uses: `error: ...` on one line, non-zero status, no panic.
//!
//! Anything specific to one topic lives in that topic's crate, not here.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{Client, ConnectOptions};
use log::debug;
use tokio::net::{lookup_host, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// What to tell a user who has no etcd running where they pointed us.
pub const HOW_TO_START_ETCD: &str =
    "start a local etcd with `scripts/etcd.sh up`, or point --endpoints / ETCD_ENDPOINTS at a running one";

/// Connection flags shared by every topic. Use it with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// etcd client endpoints, comma-separated, as `host:port` or `http://host:port`.
    #[arg(
        long,
        env = "ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379",
        value_parser = parse_endpoint
    )]
    pub endpoints: Vec<String>,

    /// How long to wait for etcd to answer before giving up, in seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub dial_timeout: Duration,
}

impl ConnectArgs {
    /// The endpoints for messages, as a user would type them: `127.0.0.1:2379`.
    pub fn endpoints_shown(&self) -> String {
        shown(&self.endpoints)
    }
}

/// Checks one endpoint and returns it as an `http://host:port` URL.
///
/// Catching a typo here gives a clear message at once, instead of a confusing transport error later.
pub fn parse_endpoint(raw: &str) -> Result<String> {
    let raw = raw.trim();
    if raw.starts_with("https://") {
        bail!(
            "`{raw}`: TLS endpoints are not supported by these examples; use http:// or host:port"
        );
    }
    let host_port = raw.strip_prefix("http://").unwrap_or(raw);
    let host_port = host_port.strip_suffix('/').unwrap_or(host_port);
    let Some((host, port)) = host_port.rsplit_once(':') else {
        bail!("`{raw}` is not an endpoint: expected host:port, for example 127.0.0.1:2379");
    };
    if host.is_empty() || host.contains('/') || host.contains("://") {
        bail!("`{raw}` is not an endpoint: expected host:port, for example 127.0.0.1:2379");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("http://{host}:{p}")),
        _ => {
            bail!("`{raw}` has no valid port: expected a number from 1 to 65535 after the last `:`")
        }
    }
}

/// Parses a positive number of seconds, decimals allowed (`5`, `0.5`).
pub fn parse_seconds(raw: &str) -> Result<Duration> {
    let secs: f64 = raw
        .trim()
        .parse()
        .with_context(|| format!("`{raw}` is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        bail!("`{raw}` must be more than 0 and at most 86400 seconds");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Connects to etcd and checks that it answers, within `--dial-timeout`.
///
/// `Client::connect` in etcd-client is lazy: it returns `Ok` even when nothing listens at the endpoint,
/// and the first real request then fails (or waits) far from the cause. So we ask the server for its
/// status right away, bounded by the dial timeout, and turn any failure into one clear sentence.
pub async fn connect(args: &ConnectArgs) -> Result<Client> {
    let endpoints = &args.endpoints;
    if endpoints.is_empty() {
        bail!("no etcd endpoint given; {HOW_TO_START_ETCD}");
    }
    let options = ConnectOptions::new()
        .with_connect_timeout(args.dial_timeout)
        // HTTP/2 pings let long-lived streams (watch, keep-alive) notice a server that vanished silently.
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
    let mut client = Client::connect(endpoints, Some(options))
        .await
        .with_context(|| format!("cannot set up a client for {}", endpoints.join(",")))?;

    let probe = tokio::time::timeout(args.dial_timeout, client.status()).await;
    let why = match probe {
        Ok(Ok(status)) => {
            debug!(
                "connected to etcd {} at {} (leader {:x}, revision {})",
                status.version(),
                shown(endpoints),
                status.leader(),
                status.header().map_or(0, |h| h.revision())
            );
            return Ok(client);
        }
        // The TCP-level cause ("connection refused") is what a user can act on; gRPC wraps it deeply.
        Ok(Err(e)) => match tcp_problem(&endpoints[0], args.dial_timeout).await {
            Some(problem) => problem,
            None => short_error(&e),
        },
        Err(_) => match tcp_problem(&endpoints[0], args.dial_timeout).await {
            Some(problem) => problem,
            None => format!(
                "something listens there but did not answer as etcd within {:?}",
                args.dial_timeout
            ),
        },
    };
    bail!(
        "cannot reach etcd at {}: {why}; {HOW_TO_START_ETCD}",
        shown(endpoints)
    )
}

/// Endpoints as the user typed them, without the `http://` we added.
fn shown(endpoints: &[String]) -> String {
    endpoints
        .iter()
        .map(|e| e.trim_start_matches("http://"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An etcd-client error in the few words a user can act on: for a gRPC status, its message and the
/// innermost cause, `tcp connect error (Connection refused (os error 111))`, instead of the nested gRPC
/// and tonic wrappers.
pub fn short_error(e: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return e.to_string();
    };
    let mut root = std::error::Error::source(status);
    while let Some(deeper) = root.and_then(|r| r.source()) {
        root = Some(deeper);
    }
    match root {
        Some(cause) => format!("{} ({cause})", status.message()),
        None => status.message().to_string(),
    }
}

/// After a failed probe, a plain TCP connect tells the user *why*: nothing listening, or a name that does
/// not resolve. `None` when the TCP connection works, so the problem is above TCP.
async fn tcp_problem(endpoint: &str, limit: Duration) -> Option<String> {
    let host_port = endpoint.trim_start_matches("http://");
    let addrs: Vec<SocketAddr> = match lookup_host(host_port).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => return Some(format!("cannot resolve `{host_port}` ({e})")),
    };
    let Some(addr) = addrs.first() else {
        return Some(format!("`{host_port}` resolves to no address"));
    };
    match tokio::time::timeout(limit.min(Duration::from_secs(2)), TcpStream::connect(addr)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string().to_lowercase()),
        Err(_) => Some("no answer to a TCP connect".into()),
    }
}

/// Call first in every `main`: sets up logging and makes the program behave like other Unix tools when
/// its output pipe closes.
///
/// Rust ignores SIGPIPE, so `cargo run -p kv | head -3` would make `println!` panic with "Broken pipe" once
/// `head` exits. Restoring the default action ends the program quietly instead, as `cat | head` does.
pub fn init() {
    // SAFETY: `signal` only swaps the process-wide action for SIGPIPE, which nothing else in these
    // programs sets or relies on; SIG_DFL is a valid action for it.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    init_logging();
}

/// Sets up logging. Quiet by default (warnings and errors only), so the learner reads the topic's own
/// plain-words output; `RUST_LOG=debug` shows the details behind it.
fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("warn");
    // `try_init` so that calling it twice (as tests may) is harmless.
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .try_init();
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
///
/// Handlers are installed by [`Shutdown::listen`], not on first poll: a signal that arrives while the
/// program is still busy with setup is then remembered instead of killing the process, so it still gets
/// to release its lease or lock.
pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    /// Installs the SIGINT and SIGTERM handlers now.
    pub fn listen() -> Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    /// Resolves when a signal arrives, with its name for the log line.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Turns the result of a topic's `run` into the process exit status.
///
/// An error prints as one line, `error: what failed: why`, with anyhow's cause chain joined by `: `.
/// `{:#}` never prints a backtrace, so `RUST_BACKTRACE=1` does not turn a user mistake into a dump.
pub fn report(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_host_port_and_http_urls() {
        assert_eq!(
            parse_endpoint("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            parse_endpoint("http://localhost:23790/").unwrap(),
            "http://localhost:23790"
        );
        assert_eq!(parse_endpoint("[::1]:2379").unwrap(), "http://[::1]:2379");
    }

    #[test]
    fn malformed_endpoints_are_refused_with_a_reason() {
        for (bad, why) in [
            ("", "not an endpoint"),
            ("127.0.0.1", "not an endpoint"),
            (":2379", "not an endpoint"),
            ("127.0.0.1:port", "no valid port"),
            ("127.0.0.1:0", "no valid port"),
            ("127.0.0.1:70000", "no valid port"),
            ("https://127.0.0.1:2379", "TLS"),
            ("ftp://x:1", "not an endpoint"),
        ] {
            let err = parse_endpoint(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?} gave {err:?}, expected {why:?}");
        }
    }

    #[test]
    fn seconds_must_be_positive() {
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_seconds("5").unwrap(), Duration::from_secs(5));
        for bad in ["0", "-1", "abc", "NaN", "inf"] {
            assert!(parse_seconds(bad).is_err(), "{bad} was accepted");
        }
    }
}
