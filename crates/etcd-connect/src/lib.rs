//! What every etcd-by-example topic shares, and nothing more:
//!
//! - [`ConnectArgs`]: the `--endpoints` / `ETCD_ENDPOINTS` and `--dial-timeout` flags, and the TLS and user
//!   flags of [`SecureArgs`] (`--cacert`, `--cert`, `--key-file`, `--user`), which each topic flattens into its
//!   own clap arguments;
//! - [`connect`]: builds an [`etcd_client::Client`] and proves that etcd answers, failing fast with a message
//!   that says where it tried and what to do;
//! - [`init`]: `RUST_LOG`-driven logging, quiet by default, and Unix behaviour for `| head`.
//!
//! What keeps a program alive once it is connected (the kept lease, the resuming watch, retries, shutdown,
//! the error exit) is in the `recipes` crate; anything specific to one topic lives in that topic's crate.

mod secure;

pub use secure::{Password, SecureArgs, PASSWORD_VARIABLE};

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{Client, ConnectOptions};
use log::debug;
use tokio::net::{lookup_host, TcpStream};
use tokio::time::{timeout_at, Instant};

use recipes::errors::explain;
/// What to tell a user who has no etcd running where they pointed us.
pub use recipes::errors::HOW_TO_START_ETCD;

/// The same, for the TLS flags.
pub const HOW_TO_START_SECURE_ETCD: &str =
    "start a local etcd with TLS and users with `scripts/etcd.sh up --secure`, or point --endpoints / \
     ETCD_ENDPOINTS at a running one";

/// Connection flags shared by every topic. Use it with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// etcd client endpoints, comma-separated, as `host:port`, `http://host:port` or `https://host:port`
    /// (`host:port` means https:// when --cacert is given).
    #[arg(
        long,
        env = "ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379",
        value_parser = parse_endpoint
    )]
    pub endpoints: Vec<String>,

    /// How long to wait for etcd to answer before giving up, in seconds.
    // Negative numbers are read as values, so `--dial-timeout -1` gets the range error, not "unexpected argument".
    #[arg(long, value_name = "SECS", default_value = "5", allow_negative_numbers = true, value_parser = parse_seconds)]
    pub dial_timeout: Duration,

    #[command(flatten)]
    pub secure: SecureArgs,
}

impl ConnectArgs {
    /// Plain-text connection flags for these endpoints: what a test or a program without flags uses.
    pub fn new(endpoints: Vec<String>, dial_timeout: Duration) -> ConnectArgs {
        ConnectArgs {
            endpoints,
            dial_timeout,
            secure: SecureArgs::default(),
        }
    }

    /// The endpoints for messages, as a user would type them: `127.0.0.1:2379`.
    pub fn endpoints_shown(&self) -> String {
        shown(&self.endpoints)
    }

    /// The endpoints as URLs, with `https://` when --cacert is given. A scheme that contradicts the
    /// flags is refused here, in words, rather than by the transport later.
    pub fn urls(&self) -> Result<Vec<String>> {
        let tls = self.secure.tls();
        self.endpoints
            .iter()
            .map(|endpoint| {
                if let Some(rest) = endpoint.strip_prefix("https://") {
                    if !tls {
                        bail!(
                            "`{endpoint}` is a TLS endpoint: also pass --cacert FILE, the CA certificate \
                             that signed etcd's server certificate"
                        );
                    }
                    Ok(format!("https://{rest}"))
                } else if let Some(rest) = endpoint.strip_prefix("http://") {
                    if tls {
                        bail!(
                            "`{endpoint}` is plain text but --cacert asks for TLS: write https://{rest} \
                             (or just {rest}), or leave out --cacert"
                        );
                    }
                    Ok(endpoint.clone())
                } else if tls {
                    Ok(format!("https://{endpoint}"))
                } else {
                    Ok(format!("http://{endpoint}"))
                }
            })
            .collect()
    }
}

/// Checks one endpoint and returns it tidied: `host:port`, `http://host:port` or `https://host:port`, as
/// given. [`ConnectArgs::urls`] decides the scheme of a bare `host:port` once all the flags are known.
///
/// Catching a typo here gives a clear message at once, instead of a confusing transport error later.
pub fn parse_endpoint(raw: &str) -> Result<String> {
    let raw = raw.trim();
    let (scheme, host_port) = if let Some(rest) = raw.strip_prefix("https://") {
        ("https://", rest)
    } else if let Some(rest) = raw.strip_prefix("http://") {
        ("http://", rest)
    } else {
        ("", raw)
    };
    let host_port = host_port.strip_suffix('/').unwrap_or(host_port);
    let Some((host, port)) = host_port.rsplit_once(':') else {
        bail!("`{raw}` is not an endpoint: expected host:port, for example 127.0.0.1:2379");
    };
    if host.is_empty() || host.contains('/') || host.contains("://") {
        bail!("`{raw}` is not an endpoint: expected host:port, for example 127.0.0.1:2379");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{scheme}{host}:{p}")),
        _ => {
            bail!("`{raw}` has no valid port: expected a number from 1 to 65535 after the last `:`")
        }
    }
}

/// Checks a key (or key prefix, or lock name) given on the command line.
///
/// etcd stores any bytes as a key, but these programs print one line per event, so a key with a newline
/// or another control character would make their output ambiguous; an empty key is refused by etcd itself
/// ("key is not provided"). Both are refused here, before anything is sent.
pub fn parse_key(raw: &str) -> Result<String> {
    if raw.is_empty() {
        bail!("a key cannot be empty");
    }
    if let Some(c) = raw.chars().find(|c| c.is_control()) {
        bail!(
            "{raw:?} contains the control character {c:?}: etcd would store it, but every line printed \
             about it would be ambiguous; use printable characters"
        );
    }
    Ok(raw.to_string())
}

/// [`parse_key`] as a clap value parser: `#[arg(long, value_parser = KeyParser)]`.
///
/// clap's usual message quotes the raw value (`invalid value 'a<newline>b' for ...`), which would break
/// the one-line error for the very input refused here; this one names the flag and shows the key escaped.
#[derive(Debug, Clone, Copy)]
pub struct KeyParser;

impl clap::builder::TypedValueParser for KeyParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<String, clap::Error> {
        let flag = arg.map_or_else(|| "the key".to_string(), |a| format!("'{a}'"));
        let why = match value.to_str() {
            Some(raw) => match parse_key(raw) {
                Ok(key) => return Ok(key),
                Err(e) => e.to_string(),
            },
            None => format!("{value:?} is not valid UTF-8"),
        };
        let message = format!("invalid value for {flag}: {why}\n");
        Err(clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd))
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

/// Connects to etcd and checks that it answers, within `--dial-timeout`: every endpoint is probed at once,
/// and each probe, finding out why an endpoint failed included, ends within the dial timeout. With
/// `--user`, the login that follows gets a dial timeout of its own.
///
/// `Client::connect` in etcd-client is lazy: it returns `Ok` even when nothing listens at the endpoint,
/// and the first real request then fails (or waits) far from the cause. So we ask the server for its
/// status right away, bounded by the dial timeout, and turn any failure into one clear sentence.
///
/// With several endpoints (a cluster), each is probed on its own, at the same time, and the client is
/// built from those that answer: etcd-client spreads requests over all the endpoints it was given and does
/// not skip a dead one (its issue #39), so one stopped member would make random requests fail. A member
/// that does not answer is named on stderr, and a background task keeps checking every endpoint: a member
/// that stops answering later is taken out of the client (`Client::remove_endpoint`), and put back
/// (`Client::add_endpoint`) when it answers again. See [`watch_members`].
pub async fn connect(args: &ConnectArgs) -> Result<Client> {
    dial(args, |endpoints, options| {
        Client::connect(endpoints, Some(options))
    })
    .await
}

/// [`connect`], with the `Client::connect` call written by the caller, so that a topic's `main.rs` shows
/// the call Go's `clientv3.New` stands for, at the step that explains it:
///
/// ```no_run
/// # async fn run(args: &etcd_connect::ConnectArgs) -> anyhow::Result<()> {
/// use etcd_client::Client;
/// // Go: clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout})
/// let client = etcd_connect::dial(args, |endpoints, options| Client::connect(endpoints, Some(options))).await?;
/// # Ok(()) }
/// ```
///
/// `connect` gets the endpoints that answered the probes and the options every topic uses (the dial
/// timeout, HTTP/2 keep-alive pings, TLS and the user of `--cacert`/`--user`); the call is bounded by the
/// dial timeout, and its error explained in one line.
pub async fn dial<F, Fut>(args: &ConnectArgs, connect: F) -> Result<Client>
where
    F: FnOnce(Vec<String>, ConnectOptions) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Client, etcd_client::Error>>,
{
    if args.endpoints.is_empty() {
        bail!("no etcd endpoint given; {HOW_TO_START_ETCD}");
    }
    let endpoints = args.urls()?;
    // The client logs in (--user) once, below. The probes only ask for `status()`, which etcd answers
    // without a login: a login per probe would cost etcd a password hash each time, every 2 s per member
    // with several endpoints.
    let client_options = args.secure.apply(options(args.dial_timeout))?;
    let dialer = Dialer {
        options: args
            .secure
            .without_user()
            .apply(options(args.dial_timeout))?,
        secure: args.secure.clone(),
        limit: args.dial_timeout,
    };
    // All at once, so a list with dead members still answers within one dial timeout.
    let probes: Vec<_> = endpoints
        .iter()
        .map(|e| tokio::spawn(dialer.clone().probe(e.clone())))
        .collect();
    let mut results = Vec::with_capacity(probes.len());
    for probe in probes {
        results.push(probe.await.context("an endpoint probe stopped")?);
    }
    let (live, dead): (Vec<_>, Vec<_>) = endpoints
        .iter()
        .zip(results)
        .partition(|(_, result)| result.is_ok());
    if live.is_empty() {
        // Only a member that is not there gets the advice to start one; a TLS or password problem names
        // its own fix.
        let unreachable = dead
            .iter()
            .any(|(_, result)| matches!(result, Err(p) if p.unreachable));
        let why: Vec<String> = dead
            .into_iter()
            .map(|(endpoint, result)| match result {
                Err(p) if endpoints.len() > 1 => format!("{}: {}", shown_one(endpoint), p.why),
                Err(p) => p.why,
                Ok(()) => unreachable!("partitioned on is_err"),
            })
            .collect();
        let shown = args.endpoints_shown();
        if unreachable {
            let how = if args.secure.tls() {
                HOW_TO_START_SECURE_ETCD
            } else {
                HOW_TO_START_ETCD
            };
            bail!("cannot reach etcd at {shown}: {}; {how}", why.join("; "));
        }
        bail!("cannot connect to etcd at {shown}: {}", why.join("; "));
    }
    let live: Vec<String> = live.into_iter().map(|(e, _)| e.clone()).collect();
    for (endpoint, result) in &dead {
        if let Err(p) = result {
            eprintln!(
                "note: etcd member {} does not answer ({}); using {}",
                shown_one(endpoint),
                p.why,
                shown(&live)
            );
        }
    }
    // With --user, this is where etcd checks the password.
    let client = tokio::time::timeout(args.dial_timeout, connect(live.clone(), client_options))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "cannot connect to etcd at {}: no answer to the login within {:?}",
                shown(&live),
                args.dial_timeout
            )
        })?
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to etcd at {}: {}",
                shown(&live),
                explain(&e)
            )
        })?;
    if endpoints.len() > 1 {
        let dead: Vec<String> = dead.into_iter().map(|(e, _)| e.clone()).collect();
        tokio::spawn(watch_members(client.clone(), live, dead, dialer));
    }
    Ok(client)
}

/// The client settings every topic uses.
fn options(dial_timeout: Duration) -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(dial_timeout)
        // HTTP/2 pings let long-lived streams (watch, keep-alive) notice a server that vanished silently
        // or froze: no answer to a ping within 3 s closes the connection, and the stream fails.
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
        .with_keep_alive_while_idle(true)
}

/// Why an endpoint could not be used, in the words a user can act on ("connection refused").
#[derive(Debug)]
struct Problem {
    why: String,
    /// Nothing (or nothing that answers) is there, as opposed to an etcd that refused us.
    unreachable: bool,
}

impl Problem {
    fn unreachable(why: String) -> Problem {
        Problem {
            why,
            unreachable: true,
        }
    }

    fn refused(why: String) -> Problem {
        Problem {
            why,
            unreachable: false,
        }
    }
}

/// What every probe needs: the client options (TLS, no login), the flags for messages, the limit.
#[derive(Clone)]
struct Dialer {
    options: ConnectOptions,
    secure: SecureArgs,
    limit: Duration,
}

/// How long before the end of the dial timeout a probe that has heard nothing yet starts finding out why
/// (at most half the dial timeout).
const FIND_OUT_WHY: Duration = Duration::from_secs(1);

impl Dialer {
    /// Asks one endpoint for its status with a client of its own. The whole probe, finding out why it
    /// failed included, ends within the dial timeout.
    async fn probe(self, endpoint: String) -> std::result::Result<(), Problem> {
        let endpoint = endpoint.as_str();
        let limit = self.limit;
        let deadline = Instant::now() + limit;
        let attempt = async {
            let mut client = Client::connect([endpoint], Some(self.options.clone())).await?;
            client.status().await
        };
        tokio::pin!(attempt);
        // Silent so far, shortly before the deadline: a TCP connect and a TLS hello find out why beside the
        // attempt, which keeps the whole dial timeout to answer.
        let outcome = match timeout_at(deadline - FIND_OUT_WHY.min(limit / 2), &mut attempt).await {
            Ok(outcome) => Some(outcome),
            Err(_) => {
                let why = self.why_silent(endpoint, deadline);
                tokio::pin!(why);
                tokio::select! {
                    outcome = timeout_at(deadline, &mut attempt) => outcome.ok(),
                    problem = &mut why => match problem {
                        Some(problem) => return Err(problem),
                        None => timeout_at(deadline, &mut attempt).await.ok(),
                    },
                }
            }
        };
        match outcome {
            Some(Ok(status)) => {
                debug!(
                    "etcd {} answers at {} (leader {:x}, revision {})",
                    status.version(),
                    shown_one(endpoint),
                    status.leader(),
                    status.header().map_or(0, |h| h.revision())
                );
                Ok(())
            }
            Some(Err(e)) => {
                debug!("status from {endpoint} failed: {e:?}");
                let why = timeout_at(deadline, self.why_failed(endpoint, &e, deadline)).await;
                Err(why.unwrap_or_else(|_| Problem::refused(explain(&e))))
            }
            // The TCP connect worked (else `why_silent` said so), so something listens.
            None => Err(Problem::unreachable(format!(
                "something listens there but did not answer as etcd within {limit:?}"
            ))),
        }
    }

    /// Why an endpoint has not answered: nothing there (within half the time left), or an etcd that
    /// speaks TLS to our plain text. `None` when something listens and it is neither.
    async fn why_silent(&self, endpoint: &str, deadline: Instant) -> Option<Problem> {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(problem) = tcp_problem(endpoint, left / 2).await {
            return Some(Problem::unreachable(problem));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        self.plain_text_to_tls(endpoint, left)
            .await
            .map(Problem::refused)
    }

    /// Why the status request failed with `e`, in the words a user can act on: the TCP-level cause
    /// ("connection refused"), which gRPC wraps deeply, or a TLS problem, or etcd's own reason.
    async fn why_failed(
        &self,
        endpoint: &str,
        e: &etcd_client::Error,
        deadline: Instant,
    ) -> Problem {
        let left = || deadline.saturating_duration_since(Instant::now());
        if let Some(problem) = tcp_problem(endpoint, left()).await {
            Problem::unreachable(problem)
        } else if let Some(tls) = self.secure.tls_problem(e, endpoint, left()).await {
            Problem::refused(tls)
        } else if let Some(tls) = self.plain_text_to_tls(endpoint, left()).await {
            Problem::refused(tls)
        } else {
            Problem::refused(explain(e))
        }
    }

    /// For an `http://` endpoint that failed: is it an etcd that speaks TLS? Asked within `limit`.
    async fn plain_text_to_tls(&self, endpoint: &str, limit: Duration) -> Option<String> {
        let host_port = endpoint.strip_prefix("http://")?;
        let addr = lookup_host(host_port).await.ok()?.next()?;
        if secure::speaks_tls(addr, limit).await {
            Some(format!(
                "etcd at {host_port} speaks TLS: use https://{host_port} with --cacert FILE (and --cert \
                 FILE --key-file FILE if it asks for client certificates)"
            ))
        } else {
            None
        }
    }
}

/// How often [`watch_members`] checks each endpoint.
const MEMBER_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Keeps a multi-endpoint client on the members that answer: every couple of seconds it probes each
/// endpoint; one that stops answering is removed from the client, one that answers again is added back.
/// The last endpoint is never removed, so that requests fail with a clear error instead of having nowhere
/// to go. Runs until the program ends.
async fn watch_members(
    client: Client,
    mut live: Vec<String>,
    mut dead: Vec<String>,
    dialer: Dialer,
) {
    let mut tick = tokio::time::interval(MEMBER_CHECK_EVERY);
    loop {
        tick.tick().await;
        for endpoint in live.clone() {
            if live.len() > 1 && dialer.clone().probe(endpoint.clone()).await.is_err() {
                debug!("member {endpoint} stopped answering; taking it out of the client");
                if client.remove_endpoint(endpoint.as_str()).await.is_ok() {
                    live.retain(|e| e != &endpoint);
                    dead.push(endpoint);
                }
            }
        }
        for endpoint in dead.clone() {
            if dialer.clone().probe(endpoint.clone()).await.is_ok() {
                debug!("member {endpoint} answers again; adding it back to the client");
                if client.add_endpoint(endpoint.as_str()).await.is_ok() {
                    dead.retain(|e| e != &endpoint);
                    live.push(endpoint);
                }
            }
        }
    }
}

/// Endpoints as the user typed them, without the `http://` we added.
fn shown(endpoints: &[String]) -> String {
    endpoints
        .iter()
        .map(|e| shown_one(e))
        .collect::<Vec<_>>()
        .join(",")
}

fn shown_one(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://")
}

/// After a failed probe, a plain TCP connect (within `limit`) tells the user *why*: nothing listening, or a
/// name that does not resolve. `None` when the TCP connection works, so the problem is above TCP.
async fn tcp_problem(endpoint: &str, limit: Duration) -> Option<String> {
    let host_port = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let addrs: Vec<SocketAddr> = match lookup_host(host_port).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => return Some(format!("cannot resolve `{host_port}` ({e})")),
    };
    let Some(addr) = addrs.first() else {
        return Some(format!("`{host_port}` resolves to no address"));
    };
    match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string().to_lowercase()),
        Err(_) => Some("no answer to a TCP connect".into()),
    }
}

/// Call first in every `main`: sets up logging and makes the program behave like other Unix tools when
/// its output pipe closes.
///
/// Rust ignores SIGPIPE, so `cargo run -p kv | head -3` would make `println!` panic with "Broken pipe" once
/// `head` exits. A panic hook turns exactly that panic into the quiet end `cat | head` has: death by
/// SIGPIPE. SIGPIPE itself stays ignored, on purpose: a socket write to a server that hung up (etcd closes
/// the connection on a client certificate it does not trust) must be an error to handle, not a signal that
/// kills the program before it can say why.
pub fn init() {
    let print_the_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            // SAFETY: `signal` only swaps the process-wide action for SIGPIPE, which nothing else in these
            // programs relies on any more (the process is ending), and `raise` then delivers it to this
            // thread, whose default action ends the whole process.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
        }
        print_the_panic(info);
    }));
    init_logging();
}

/// Sets up logging. Quiet by default (warnings and errors only), so the learner reads the topic's own
/// plain-words output; `RUST_LOG=debug` shows the details behind it.
///
/// Each line starts with the seconds since the program started (`[   1.234s DEBUG watch] ...`): what a
/// learner compares is how far apart two things happened (a renewal, a reconnect), and a clock time would
/// need a date library (env_logger's `humantime` feature, which builds `jiff`: about 4 CPU-seconds of every
/// cold build, for timestamps nobody reads).
fn init_logging() {
    use std::io::Write;
    let started = std::time::Instant::now();
    let env = env_logger::Env::default().default_filter_or("warn");
    let mut builder = env_logger::Builder::from_env(env);
    // rustls logs every TLS handshake at debug level: a screenful next to the topic's own lines. It
    // stays at warnings unless RUST_LOG names it (`RUST_LOG=debug,rustls=debug`).
    if !std::env::var("RUST_LOG").is_ok_and(|filter| filter.contains("rustls")) {
        builder.filter_module("rustls", log::LevelFilter::Warn);
    }
    // `try_init` so that calling it twice (as tests may) is harmless.
    let _ = builder
        .format(move |out, record| {
            writeln!(
                out,
                "[{:>8.3}s {:<5} {}] {}",
                started.elapsed().as_secs_f64(),
                record.level(),
                record.target(),
                record.args()
            )
        })
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_host_port_and_http_and_https_urls() {
        assert_eq!(parse_endpoint("127.0.0.1:2379").unwrap(), "127.0.0.1:2379");
        assert_eq!(
            parse_endpoint("http://localhost:23790/").unwrap(),
            "http://localhost:23790"
        );
        assert_eq!(
            parse_endpoint("https://127.0.0.1:2479").unwrap(),
            "https://127.0.0.1:2479"
        );
        assert_eq!(parse_endpoint("[::1]:2379").unwrap(), "[::1]:2379");
    }

    fn with(endpoints: &[&str], cacert: Option<&str>) -> ConnectArgs {
        let mut args = ConnectArgs::new(
            endpoints
                .iter()
                .map(|e| parse_endpoint(e).unwrap())
                .collect(),
            Duration::from_secs(1),
        );
        args.secure.cacert = cacert.map(Into::into);
        args
    }

    #[test]
    fn the_scheme_follows_cacert_and_contradictions_are_refused() {
        assert_eq!(
            with(&["127.0.0.1:2379"], None).urls().unwrap(),
            ["http://127.0.0.1:2379"]
        );
        assert_eq!(
            with(&["127.0.0.1:2479"], Some("ca.crt")).urls().unwrap(),
            ["https://127.0.0.1:2479"]
        );
        let no_ca = with(&["https://127.0.0.1:2479"], None).urls().unwrap_err();
        assert!(no_ca.to_string().contains("also pass --cacert"), "{no_ca}");
        let plain = with(&["http://127.0.0.1:2479"], Some("ca.crt"))
            .urls()
            .unwrap_err();
        assert!(plain.to_string().contains("write https://"), "{plain}");
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let args = with(&["127.0.0.1:2479"], Some("ca.crt"));
        let args = ConnectArgs {
            secure: args.secure.with_user("app", "s3cret-value"),
            ..args
        };
        let shown = format!("{args:?} {args:#?}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(shown.contains("Password(hidden)"), "{shown}");
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
            ("ftp://x:1", "not an endpoint"),
        ] {
            let err = parse_endpoint(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?} gave {err:?}, expected {why:?}");
        }
    }

    #[test]
    fn keys_must_be_non_empty_and_printable() {
        assert_eq!(parse_key("/app/name").unwrap(), "/app/name");
        assert_eq!(parse_key("名字").unwrap(), "名字");
        assert!(parse_key("")
            .unwrap_err()
            .to_string()
            .contains("cannot be empty"));
        let newline = parse_key("a\nb").unwrap_err().to_string();
        assert!(newline.contains("control character '\\n'"), "{newline}");
        assert!(
            !newline.contains('\n'),
            "the message itself stays on one line: {newline}"
        );
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
