//! What to do when a call to etcd fails: say what failed in one line a user can act on ([`explain`] for an
//! etcd-client error, [`one_line`] for a whole chain of causes, [`report`] to end `main` with it), tell
//! whether trying again can help ([`is_transient`]), and how long to wait before it ([`Backoff`],
//! [`with_backoff`]).
//!
//! etcd-client's errors print as nested gRPC and tonic wrappers (`grpc request error: status: Unavailable,
//! message: "...", details: [], metadata: MetadataMap { .. }`); these functions keep etcd's reason and add
//! what to do about it. The full error stays in the log at `RUST_LOG=debug`.
//!
//! Depends only on `etcd-client`, `tokio`, `anyhow` and `log`: copy this file alone (and put your own
//! advice in [`HOW_TO_START_ETCD`]).

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::debug;

/// The advice given when etcd cannot be reached. (In your own service, say where its etcd comes from.)
pub const HOW_TO_START_ETCD: &str =
    "start a local etcd with `scripts/etcd.sh up`, or point --endpoints / ETCD_ENDPOINTS at a running one";

/// The environment variable that holds the password of `--user`, named in the advice on a failed login.
const PASSWORD_VARIABLE: &str = "ETCD_PASSWORD";

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

/// Turns the result of a topic's `run` into the process exit status.
///
/// An error prints as one line, `error: what failed: why`, with anyhow's cause chain joined by `: `.
/// `{:#}` never prints a backtrace, so `RUST_BACKTRACE=1` does not turn a user mistake into a dump.
///
/// An etcd-client error in the chain is shown through [`explain`], and the chain stops there: its own
/// sources are the raw gRPC and transport layers. `RUST_LOG=debug` logs the whole error first.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
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

/// The pauses of a retry loop: the first is `first`, each one after it twice the one before, never more
/// than `max`. With [`full_jitter`](Self::full_jitter), each pause is a random time from zero to that.
///
/// Waiting longer and longer keeps many clients from hammering an etcd that is coming back up (or a CPU
/// from spinning on an error that does not go away); the cap keeps a client from sleeping long after etcd
/// is back. [`Backoff::default`] is the one schedule the topics use for a lost connection: 0.2 s, 0.4 s,
/// 0.8 s, 1.6 s, 3.2 s, then 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    failures: u32,
    jitter: bool,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
    }
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            failures: 0,
            jitter: false,
        }
    }

    /// Each pause a random time from zero to the schedule's: "exponential backoff with full jitter".
    /// Use it when many clients retry after the same event (writers that lost one compare-and-swap):
    /// the randomness keeps them from colliding again at the same moment.
    pub fn full_jitter(mut self) -> Backoff {
        self.jitter = true;
        self
    }

    /// The failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts one more failure and returns the pause to take before the next attempt.
    pub fn next_pause(&mut self) -> Duration {
        let limit = self
            .first
            .saturating_mul(2u32.saturating_pow(self.failures))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        if self.jitter {
            up_to(limit)
        } else {
            limit
        }
    }

    /// Counts one more failure and sleeps for the pause it earns.
    pub async fn wait(&mut self) {
        let pause = self.next_pause();
        tokio::time::sleep(pause).await;
    }

    /// An attempt worked: the next failure starts the schedule over.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Whether a failed call may succeed if made again: etcd could not be reached or the connection broke (a
/// restart, a network blip, a leader election, an overloaded member), as opposed to etcd refusing the
/// request itself (an invalid argument, no permission, a lease that does not exist, a reply over the
/// client's size limit), which the same call gets again on every try.
pub fn is_transient(e: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    match e {
        // gRPC status codes by number (tonic is not a dependency here): CANCELLED 1, UNKNOWN 2 (a broken
        // HTTP/2 connection), DEADLINE_EXCEEDED 4, RESOURCE_EXHAUSTED 8 ("too many requests"), ABORTED 10,
        // INTERNAL 13, UNAVAILABLE 14 (etcd unreachable, no leader yet).
        Error::GRpcStatus(status) => matches!(status.code() as i32, 1 | 2 | 4 | 8 | 10 | 13 | 14),
        Error::TransportError(_) | Error::IoError(_) => true,
        // A stream whose connection broke: etcd-client says "channel closed" for both.
        Error::WatchError(_) => true,
        Error::LeaseKeepAliveError(why) => why != "lease not found",
        _ => false,
    }
}

/// Makes `call` until it works or fails in a way that retrying cannot fix ([`is_transient`]), with the
/// [`Backoff::default`] pauses in between; `on_retry(failures, &error, pause)` is told of each retry.
///
/// It never gives up on a transient error: bound it by the caller's deadline (`tokio::time::timeout`) or
/// by a shutdown signal, as a program that waits for etcd to come back must.
pub async fn with_backoff<T, F, Fut>(
    mut call: F,
    mut on_retry: impl FnMut(u32, &etcd_client::Error, Duration),
) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut backoff = Backoff::default();
    loop {
        match call().await {
            Ok(reply) => return Ok(reply),
            Err(e) if is_transient(&e) => {
                let pause = backoff.next_pause();
                debug!(
                    "attempt {} failed ({e}); next in {pause:?}",
                    backoff.failures()
                );
                on_retry(backoff.failures(), &e, pause);
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A random duration from 0 to `limit`. The randomness is a xorshift generator seeded from the clock:
/// enough to spread retries, without a dependency on `rand`.
fn up_to(limit: Duration) -> Duration {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        x = nanos | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    limit.mul_f64((x % 1025) as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_stays_at_the_cap() {
        let mut backoff = Backoff::default();
        let waits: Vec<u128> = (0..7).map(|_| backoff.next_pause().as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000]);
        backoff.failures = u32::MAX;
        assert_eq!(backoff.next_pause(), Duration::from_secs(5), "no overflow");
        backoff.reset();
        assert_eq!(backoff.next_pause(), Duration::from_millis(200));
    }

    #[test]
    fn pauses_stay_between_zero_and_the_limit_and_spread_out() {
        let limit = Duration::from_millis(100);
        let pauses: Vec<Duration> = (0..1000).map(|_| up_to(limit)).collect();
        assert!(pauses.iter().all(|p| *p <= limit), "{pauses:?}");
        assert!(pauses.iter().any(|p| *p < limit / 10), "{pauses:?}");
        assert!(pauses.iter().any(|p| *p > limit * 9 / 10), "{pauses:?}");
        let mut jittered = Backoff::new(limit, limit).full_jitter();
        assert!((0..100).all(|_| jittered.next_pause() <= limit));
    }

    #[test]
    fn errors_are_split_into_retry_and_give_up() {
        use etcd_client::Error;
        assert!(is_transient(&Error::WatchError("channel closed".into())));
        assert!(is_transient(&Error::LeaseKeepAliveError(
            "channel closed".into()
        )));
        assert!(!is_transient(&Error::LeaseKeepAliveError(
            "lease not found".into()
        )));
        assert!(!is_transient(&Error::InvalidArgs("bad".into())));
        assert!(!is_transient(&Error::EndpointError("bad".into())));
    }
}
