//! What every etcd-by-example topic shares, and nothing more:
//!
//! - [`ConnectArgs`]: the `--endpoints` / `ETCD_ENDPOINTS` and `--dial-timeout` flags, and the TLS and user
//!   flags of [`SecureArgs`] (`--cacert`, `--cert`, `--key-file`, `--user`), which each topic flattens into its
//!   own clap arguments;
//! - [`connect`]: builds an [`etcd_client::Client`] and proves that etcd answers, failing fast with a message
//!   that says where it tried and what to do;
//! - [`init`]: `RUST_LOG`-driven logging, quiet by default, and Unix behaviour for `| head`;
//! - [`Shutdown`]: waits for Ctrl-C or SIGTERM, so long-running topics can release what they hold;
//! - [`report`]: the one error exit every binary uses: `error: ...` on one line, non-zero status, no panic.
//!
//! Anything specific to one topic lives in that topic's crate, not here.

mod secure;

pub use secure::{Password, SecureArgs, PASSWORD_VARIABLE};

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{Client, ConnectOptions};
use log::debug;
use tokio::net::{lookup_host, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::{timeout_at, Instant};

/// What to tell a user who has no etcd running where they pointed us.
/// The largest reply a topic accepts on a watch, in bytes: 64 MiB, where etcd-client keeps 4 MiB. A watch
/// that replays history (after a restart, or from a past revision) gets up to 1,000 revisions in one
/// reply, and a reply over the limit fails to decode on every try: so every watch in the topics goes
/// through `client.watch_client().max_decoding_message_size(MAX_RESPONSE)`, never `client.watch`. The
/// watch topic's `MAX_RESPONSE` (crates/watch/src/lib.rs) explains the number; it and discovery's repeat
/// it so that each `src/lib.rs` copies alone, and `tests/limits.rs` keeps the three equal.
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

pub const HOW_TO_START_ETCD: &str =
    "start a local etcd with `scripts/etcd.sh up`, or point --endpoints / ETCD_ENDPOINTS at a running one";

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
    let client = tokio::time::timeout(
        args.dial_timeout,
        Client::connect(&live, Some(client_options)),
    )
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

/// An etcd-client error as one plain line: what went wrong, etcd's own reason, and what to do about it,
/// instead of the nested gRPC and tonic wrappers (`grpc request error: code: 'Client specified an invalid
/// argument', message: "etcdserver: request is too large", ...`). The full error stays available at
/// `RUST_LOG=debug` (see [`report`]).
pub fn explain(e: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return match e {
            etcd_client::Error::TransportError(t) => format!(
                "lost the connection to etcd ({}); is it running? {HOW_TO_START_ETCD}",
                innermost(t)
            ),
            // etcd-client uses this error for etcd's TTL 0 answer ("lease not found"), and also when it
            // cannot send on a keep-alive stream whose connection broke ("channel closed").
            etcd_client::Error::LeaseKeepAliveError(why) if why == "lease not found" => {
                format!("the lease is gone: it expired or was revoked ({why})")
            }
            etcd_client::Error::LeaseKeepAliveError(why) => {
                format!("the keep-alive stream is closed ({why}): the connection to etcd broke")
            }
            other => other.to_string(),
        };
    };
    let message = status.message();
    // A request over etcd's gRPC limit (--max-request-bytes plus 0.5 MiB) is refused before etcd reads it,
    // in gRPC's words: "grpc: received message larger than max (10260000 vs. 2097152)".
    if let Some(sizes) = message.strip_prefix("grpc: received message larger than max (") {
        let sizes = match sizes.trim_end_matches(')').split_once(" vs. ") {
            Some((size, limit)) => format!("{size} bytes, over etcd's limit of {limit}"),
            None => format!("({sizes}"),
        };
        return format!(
            "the request is too large ({sizes}): etcd refuses requests over --max-request-bytes (1.5 MiB \
             by default, plus 0.5 MiB for gRPC): send less in one request"
        );
    }
    let reason = message.trim_start_matches("etcdserver: ");
    // gRPC status codes by number (tonic is not a direct dependency here): see grpc's status codes.
    const DEADLINE_EXCEEDED: i32 = 4;
    const PERMISSION_DENIED: i32 = 7;
    const UNAVAILABLE: i32 = 14;
    const UNAUTHENTICATED: i32 = 16;
    const INVALID_ARGUMENT: i32 = 3;
    const FAILED_PRECONDITION: i32 = 9;
    const OUT_OF_RANGE: i32 = 11;
    let advice = if message.contains("request is too large") {
        "etcd refuses requests over --max-request-bytes, 1.5 MiB by default: keep big values elsewhere \
         and store a reference in etcd"
            .to_string()
    } else if message.contains("message length too large") {
        // etcd-client's default limit is 4 MiB; the watch and discovery topics raise it to 64 MiB.
        let limit = if message.contains("limit is: 4194304 bytes") {
            "the client's 4 MiB message limit"
        } else {
            "the client's message limit"
        };
        format!(
            "the reply is over {limit}: for a read, read fewer keys at a time (`with_limit`, or the \
             `kv` topic's `get_prefix_in_pages`) or raise the limit with \
             `client.kv_client().max_decoding_message_size(..)`; for a watch, watch from a later revision \
             or raise the limit with `client.watch_client().max_decoding_message_size(..)`"
        )
    } else if message.contains("required revision has been compacted") {
        "etcd no longer keeps that revision; read the current state and continue from there"
            .to_string()
    } else if message.contains("requested lease not found") {
        "the lease expired or was revoked; grant a new one".to_string()
    } else if message.contains("key not found") {
        "the key does not exist".to_string()
    } else if message.contains("authentication failed") {
        format!("check --user and the password in {PASSWORD_VARIABLE}")
    } else if message.contains("authentication is not enabled") {
        "this etcd has no users to log in as: leave out --user".to_string()
    } else if message.contains("user name is empty") || message.contains("user name not found") {
        "this etcd has auth enabled: log in with --user NAME (password in ETCD_PASSWORD), or use a \
         client certificate whose CN is a user"
            .to_string()
    } else {
        match status.code() as i32 {
            UNAVAILABLE => {
                let cause = std::error::Error::source(status)
                    .map(|s| format!(" ({})", innermost(s)))
                    .unwrap_or_default();
                return format!(
                    "etcd is unavailable{cause}: {reason}; is it running? {HOW_TO_START_ETCD}"
                );
            }
            DEADLINE_EXCEEDED => {
                "etcd did not answer in time; is it overloaded or partitioned?".into()
            }
            PERMISSION_DENIED => {
                "the user's roles do not grant this key; `etcdctl role get <role>` shows what they grant"
                    .into()
            }
            UNAUTHENTICATED => "log in with a user name and password (or check them)".into(),
            INVALID_ARGUMENT | FAILED_PRECONDITION | OUT_OF_RANGE => {
                "etcd refused the request".into()
            }
            // Not etcd's answer but the transport's: the HTTP/2 connection broke mid-call (a killed etcd
            // answers nothing). tonic makes such a status from the hyper or h2 error and keeps that error
            // as its source; a status that etcd sent has none.
            _ if std::error::Error::source(status).is_some()
                || message.contains("h2 protocol error")
                || message.contains("transport error") =>
            {
                return format!("the HTTP/2 connection broke: {reason}");
            }
            _ => return format!("etcd answered: {reason}"),
        }
    };
    format!("{reason}: {advice}")
}

/// The deepest cause of an error: `Connection refused (os error 111)` rather than its wrappers.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut root = e;
    while let Some(deeper) = root.source() {
        root = deeper;
    }
    root.to_string()
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

/// The time left for the calls a program makes on its way out (unlock, resign, revoke, a last read, the
/// clean-up). The clock starts at the first of them, and every one after it gets what is left: together they
/// never take longer than `--dial-timeout`, so stopping never hangs on an etcd that stopped answering.
/// Create it with the dial timeout: `ExitBudget::new(args.connect.dial_timeout)`.
#[derive(Debug)]
pub struct ExitBudget {
    limit: Duration,
    until: Option<tokio::time::Instant>,
}

impl ExitBudget {
    pub fn new(limit: Duration) -> ExitBudget {
        ExitBudget { limit, until: None }
    }

    /// Makes `call` (described by `what`, as in "unlock /lock/694d"), giving up when the budget runs out.
    /// An etcd error keeps its cause, so [`report`] explains it in one line.
    pub async fn call<T>(
        &mut self,
        what: impl std::fmt::Display,
        call: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        let until = *self
            .until
            .get_or_insert_with(|| tokio::time::Instant::now() + self.limit);
        match tokio::time::timeout_at(until, call).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context(what.to_string())),
            Err(_) => bail!(
                "{what}: etcd did not answer within {:?} (--dial-timeout)",
                self.limit
            ),
        }
    }
}

/// Turns the result of a topic's `run` into the process exit status.
///
/// An error prints as one line, `error: what failed: why`, with anyhow's cause chain joined by `: `.
/// `{:#}` never prints a backtrace, so `RUST_BACKTRACE=1` does not turn a user mistake into a dump.
///
/// An etcd-client error in the chain is shown through [`explain`], and the chain stops there: its own
/// sources are the raw gRPC and transport layers. `RUST_LOG=debug` logs the whole error first.
pub fn report(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            debug!("full error: {e:?}");
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// anyhow's cause chain joined by `: `, with an etcd-client error replaced by its [`explain`]ed form.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        if let Some(etcd) = cause.downcast_ref::<etcd_client::Error>() {
            parts.push(explain(etcd));
            break;
        }
        parts.push(cause.to_string());
    }
    parts.join(": ").replace('\n', " ")
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
