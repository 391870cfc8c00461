//! A watch that resumes where it stopped: [`ResumingWatch`] remembers the next revision it has not
//! handled, so after a lost stream it asks for "everything from there" on a new one, without missing or
//! repeating a change; after a compaction it reads the current state and goes on from there.
//!
//! The one idea to take away: a watch is a position in etcd's history, not a live feed. Every change has
//! a revision, so a watcher that remembers the next one can always resume, as long as etcd still keeps
//! that part of its history (compaction drops it). Around it: [`MAX_RESPONSE`], the decoding limit a
//! watch needs, and [`QuickBreaks`] for a stream that opens and breaks at once.
//!
//! Depends on `etcd-client`, `tokio`, `anyhow` and `log`, and on its sibling `errors.rs` (for
//! [`Backoff`] and [`is_transient`]): copy the two files.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use etcd_client::{Client, GetOptions, GetResponse, WatchOptions, WatchResponse, WatchStream};
use log::debug;

use crate::errors::{is_transient, Backoff};

/// The largest reply this watch accepts from etcd, in bytes: 64 MiB, where etcd-client's default is 4 MiB.
///
/// etcd refuses a *request* over `--max-request-bytes` (1.5 MiB by default), so no single write is
/// bigger than that. But one watch *response* can carry many events: when a watch replays history (a
/// `--rev` in the past, or a resume after downtime), etcd packs up to 1,000 revisions into one response,
/// so five 1 MB values already make a 5 MB response, over the 4 MiB default. A reply over the limit
/// fails to decode on every try, so a watcher that retried it would loop forever. 64 MiB holds the
/// replay of about 40 writes of the largest size etcd accepts, at the cost of nothing until such a
/// reply comes (the limit is a cap, not a buffer). A reply even larger than this still fails: it is
/// reported as an error retrying cannot fix (see [`is_transient`]), and the watcher stops with a clear
/// message instead of spinning. Watch from a later revision, or raise the limit with
/// [`ResumingWatch::with_max_response`].
///
/// This is the one limit for every long-lived read and watch of the topics: each goes through
/// `client.watch_client().max_decoding_message_size(MAX_RESPONSE)`, never `client.watch` (which keeps
/// 4 MiB); crates/etcd-connect/tests/limits.rs fails on a `client.watch(..)` in a topic.
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// A watch on a key (or a prefix) that remembers the next revision to ask for, so it can be opened again
/// after the stream breaks, and read the current state when the history it needs was compacted.
///
/// Use it in a service that must act on every change exactly once and keeps running through etcd
/// restarts, network drops and compaction: a config watcher, a cache kept in sync with a prefix. It holds
/// no stream; [`reopen`](Self::reopen) and [`catch_up`](Self::catch_up) hand you one, confirmed by etcd,
/// and you read it with `stream.message()`. Or let [`next`](Self::next) do all of it:
///
/// ```ignore
/// // (Not compiled here: README.md's "resuming_watch" program, which scripts/check-copy.sh builds and
/// // runs, is this loop whole. A doc test would have to name this crate, and fail in yours.)
/// # async fn follow(client: &etcd_client::Client) -> anyhow::Result<()> {
/// use resuming_watch::{Delivery, ResumingWatch};
///
/// let mut watch = ResumingWatch::new("/config/", true, None);
/// loop {
///     // Each call first counts what the last one delivered as handled, so a crash in between means a
///     // replay, not a gap. A lost stream is opened again inside, from where it stopped.
///     match watch.next(client, |_, _, _| {}).await? {
///         Delivery::Events(resp) => {
///             for event in resp.events() {
///                 // ... apply the event ...
///             }
///         }
///         // The history we needed was compacted: here is the current state instead.
///         Delivery::CaughtUp(state) => { /* ... rebuild what you keep from state.kvs() ... */ }
///         Delivery::Opened { from } | Delivery::Reopened { from } => log::info!("watching from revision {from}"),
///     }
/// }
/// # }
/// ```
///
/// Give it a `Client` built with `ConnectOptions::with_keep_alive`, so that a server which vanished
/// without closing the connection is noticed. The same `Client` can be used for every reopen: its channel
/// connects again by itself once etcd is back (`tests/steps.rs` checks that across an etcd restart).
/// For more `WatchOptions` (`with_prev_key`, filters), add them where `try_open` builds its options.
///
/// It watches through `client.watch_client()` with its decoding limit raised to [`MAX_RESPONSE`], since
/// `Client::watch` keeps etcd-client's 4 MiB default, too small for a replay of big values. An error that
/// retrying cannot fix (not [`is_transient`]) ends `reopen` with that error; any other is retried with a
/// growing pause, and so is a watch that breaks again right after it opened ([`QuickBreaks`]).
#[derive(Debug)]
pub struct ResumingWatch {
    key: Vec<u8>,
    /// The stream [`next`](Self::next) reads, once open.
    open: Option<Opened>,
    /// The revision right after the events [`next`](Self::next) delivered last: handled once it is called
    /// again.
    delivered_up_to: Option<i64>,
    attempt_timeout: Duration,
    prefix: bool,
    next_revision: Option<i64>,
    max_response: usize,
    breaks: QuickBreaks,
    /// The previous attempt logged in again after a "permission denied" (see `try_open`); read and
    /// cleared by the next attempt.
    logged_in_again: bool,
}

/// What [`ResumingWatch::next`] brings.
#[derive(Debug)]
pub enum Delivery {
    /// The watch is open, for the first time, from this revision.
    Opened { from: i64 },
    /// The stream broke (etcd restarted, the network dropped) and is open again, from this revision:
    /// nothing in between is lost, it comes next.
    Reopened { from: i64 },
    /// Changes, in revision order.
    Events(WatchResponse),
    /// The history the watch needed was compacted: this is what the watched keys hold now, read with
    /// one GET; the changes after it come next.
    CaughtUp(GetResponse),
}

/// A watch that etcd has confirmed, from [`ResumingWatch::reopen`] or [`ResumingWatch::catch_up`].
#[derive(Debug)]
pub struct Opened {
    /// Read changes with `stream.message()`; stop with `stream.cancel(watch_id)`.
    pub stream: WatchStream,
    /// etcd's name for this watch on the stream, needed to cancel it.
    pub watch_id: i64,
    /// The first revision this watch reports.
    pub start_revision: i64,
    /// From [`ResumingWatch::catch_up`] only: what the watched keys held when the watch started, read
    /// with one GET at revision `start_revision - 1`.
    pub state: Option<GetResponse>,
}

/// Why one attempt to open the watch failed.
enum Failure {
    /// The stream broke, etcd did not answer: worth another try after a pause.
    Retry(anyhow::Error),
    /// etcd refused the watch itself (permissions, for example): trying again cannot help.
    Refused(anyhow::Error),
}

/// For `map_err`: an etcd-client error, with what we were doing, as a failure worth retrying, or as a
/// refusal when retrying cannot fix it (not [`is_transient`]).
fn failed(doing: String, max_response: usize) -> impl FnOnce(etcd_client::Error) -> Failure {
    move |e| {
        if !is_transient(&e) {
            Failure::Refused(give_up(doing, e, max_response))
        } else {
            Failure::Retry(anyhow!(e).context(doing))
        }
    }
}

/// An error that retrying cannot fix (not [`is_transient`]), with what we were doing, as the error to stop on.
///
/// A reply over the decoding limit is put in words here, because the limit is this program's choice
/// (`max_response` bytes), not etcd's: the generic advice about etcd-client's 4 MiB default would be
/// wrong. Any other error is kept as it is, for the caller to explain.
pub fn give_up(
    doing: impl std::fmt::Display,
    e: etcd_client::Error,
    max_response: usize,
) -> anyhow::Error {
    match &e {
        etcd_client::Error::GRpcStatus(status)
            if status.message().contains("message length too large") =>
        {
            const MIB: usize = 1024 * 1024;
            let limit = match max_response {
                n if n % MIB == 0 => format!("{} MiB", n / MIB),
                n => format!("{n} bytes"),
            };
            anyhow!(
                "{doing}: one reply from etcd is over the {limit} this watcher accepts ({}); \
                 it holds many events of history at once, so watch from a later revision, or raise \
                 the limit (MAX_RESPONSE in resuming_watch.rs)",
                status
                    .message()
                    .trim_start_matches("Error, ")
                    .replace("the limit is: ", "limit ")
            )
        }
        _ => anyhow!(e).context(doing.to_string()),
    }
}

impl ResumingWatch {
    /// A watch on `key` (every key starting with `key` if `prefix`), to be opened from revision `from`;
    /// `None` means "changes after now", pinned to a number when the watch is first opened.
    pub fn new(key: impl Into<Vec<u8>>, prefix: bool, from: Option<i64>) -> ResumingWatch {
        ResumingWatch {
            key: key.into(),
            open: None,
            delivered_up_to: None,
            attempt_timeout: Duration::from_secs(5),
            prefix,
            next_revision: from,
            max_response: MAX_RESPONSE,
            breaks: QuickBreaks::default(),
            logged_in_again: false,
        }
    }

    /// Accept replies up to `bytes` instead of [`MAX_RESPONSE`]; a reply over it ends
    /// [`reopen`](Self::reopen) with an error (see [`MAX_RESPONSE`]).
    pub fn with_max_response(mut self, bytes: usize) -> ResumingWatch {
        self.max_response = bytes;
        self
    }

    /// Bound each attempt of [`next`](Self::next) to open the watch by `limit` instead of 5 s (use the
    /// dial timeout): a request to a server that vanished can wait forever.
    pub fn with_attempt_timeout(mut self, limit: Duration) -> ResumingWatch {
        self.attempt_timeout = limit;
        self
    }

    /// The next thing the watch brings, opening (and re-opening) its stream as needed: the whole
    /// resuming watch in one call (see the example on [`ResumingWatch`]).
    ///
    /// Calling it again means the events it returned last are handled: only then does the position move
    /// past them. `on_retry(attempt, error, pause)` is told of each failed attempt to open the stream (see
    /// [`reopen`](Self::reopen)). It fails only on what retrying cannot fix: etcd refused or cancelled
    /// the watch, or a reply over [`MAX_RESPONSE`].
    pub async fn next(
        &mut self,
        client: &Client,
        mut on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<Delivery> {
        if let Some(next) = self.delivered_up_to.take() {
            self.next_revision = Some(next);
            self.breaks.delivered();
        }
        loop {
            let Some(open) = self.open.as_mut() else {
                let first = self.next_revision.is_none();
                let opened = self
                    .reopen(client, self.attempt_timeout, &mut on_retry)
                    .await?;
                let from = opened.start_revision;
                self.open = Some(opened);
                return Ok(if first {
                    Delivery::Opened { from }
                } else {
                    Delivery::Reopened { from }
                });
            };
            match open.stream.message().await {
                Ok(Some(resp)) if resp.canceled() && resp.compact_revision() > 0 => {
                    debug!(
                        "history compacted at {}: catching up",
                        resp.compact_revision()
                    );
                    self.open = None;
                    let mut opened = self
                        .catch_up(client, self.attempt_timeout, &mut on_retry)
                        .await?;
                    let state = opened.state.take();
                    self.open = Some(opened);
                    if let Some(state) = state {
                        return Ok(Delivery::CaughtUp(state));
                    }
                }
                Ok(Some(resp)) if resp.canceled() => {
                    return Err(anyhow!(
                        "etcd cancelled the watch on {}: {}",
                        self.describe(),
                        resp.cancel_reason()
                    ))
                }
                Ok(Some(resp)) => {
                    let last = resp
                        .events()
                        .iter()
                        .filter_map(|e| e.kv())
                        .map(|kv| kv.mod_revision())
                        .max();
                    if let Some(last) = last {
                        self.delivered_up_to = Some(last + 1);
                        return Ok(Delivery::Events(resp));
                    }
                }
                Err(e) if !is_transient(&e) => {
                    return Err(give_up(
                        format!("watch {}", self.describe()),
                        e,
                        self.max_response,
                    ))
                }
                Ok(None) | Err(_) => {
                    debug!("the watch on {} broke; opening it again", self.describe());
                    self.open = None;
                }
            }
        }
    }

    /// The revision the next [`reopen`](Self::reopen) asks for; `None` until the first open pins "now".
    pub fn next_revision(&self) -> Option<i64> {
        self.next_revision
    }

    /// Records that every event in `response` has been handled: the watch resumes right after the last
    /// one. Call it after acting on the events, so that a failure in between means a replay, not a gap.
    /// A response without events (a confirmation, a cancel) changes nothing.
    pub fn advance(&mut self, response: &WatchResponse) {
        let last = response
            .events()
            .iter()
            .filter_map(|event| event.kv())
            .map(|kv| kv.mod_revision())
            .max();
        if let Some(last) = last {
            self.next_revision = Some(last + 1);
            self.breaks.delivered();
        }
    }

    /// Opens the watch from [`next_revision`](Self::next_revision), and waits until etcd confirms it.
    ///
    /// Use it to open the watch the first time, and again whenever its stream ends or fails. Changes made
    /// while no watch was open are still in etcd's history and come first; none is repeated. Each attempt
    /// is bounded by `attempt_timeout`, because a request to a server that vanished can wait forever.
    /// After a failed attempt, `on_retry(attempt, error, pause)` is called and the next one waits `pause`,
    /// see [`Backoff`]. It retries until etcd answers; it returns an error only when etcd refuses the
    /// watch itself, or on an error that retrying cannot fix (not [`is_transient`]). If the watch it opened
    /// last broke again before it delivered anything (see [`QuickBreaks`]), it first waits a growing pause,
    /// so that a stream that fails at once every time cannot make a busy loop either. It is safe to drop while it waits (in `tokio::select!` with a shutdown signal, for
    /// instance): the position is only moved once a watch is open.
    ///
    /// If that part of the history was compacted, etcd still confirms the watch, then cancels it with
    /// `compact_revision()` set: call [`catch_up`](Self::catch_up) when you read that.
    pub async fn reopen(
        &mut self,
        client: &Client,
        attempt_timeout: Duration,
        on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<Opened> {
        self.open_with_backoff(client, attempt_timeout, false, on_retry)
            .await
    }

    /// After a compaction: reads what the watched keys hold now with one GET, then opens the watch from
    /// the revision right after that read. Retries like [`reopen`](Self::reopen).
    ///
    /// Use it when a response says `canceled()` with `compact_revision() > 0`: the changes between
    /// [`next_revision`](Self::next_revision) and that compaction cannot be replayed, and asking again from
    /// the same revision would fail again. The state they led to can still be read, and a GET is a snapshot
    /// at one revision, so watching from that revision + 1 misses nothing after it. The read is in
    /// [`Opened::state`].
    pub async fn catch_up(
        &mut self,
        client: &Client,
        attempt_timeout: Duration,
        on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<Opened> {
        self.open_with_backoff(client, attempt_timeout, true, on_retry)
            .await
    }

    async fn open_with_backoff(
        &mut self,
        client: &Client,
        attempt_timeout: Duration,
        read_state_first: bool,
        mut on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<Opened> {
        let pause = self.breaks.broke();
        if !pause.is_zero() {
            debug!("the last watch broke before delivering anything; waiting {pause:?} first");
            tokio::time::sleep(pause).await;
        }
        let mut backoff = Backoff::default();
        loop {
            let attempt = self.try_open(client, read_state_first);
            let error = match tokio::time::timeout(attempt_timeout, attempt).await {
                Ok(Ok(opened)) => {
                    self.breaks.opened();
                    return Ok(opened);
                }
                Ok(Err(Failure::Refused(error))) => return Err(error),
                Ok(Err(Failure::Retry(error))) => error,
                Err(_) => anyhow!("etcd did not answer within {attempt_timeout:?}"),
            };
            let pause = backoff.next_pause();
            debug!("watch attempt {} failed: {error:#}", backoff.failures());
            on_retry(backoff.failures(), &error, pause);
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt: (the GET, then) the watch request and etcd's confirmation.
    async fn try_open(
        &mut self,
        client: &Client,
        read_state_first: bool,
    ) -> Result<Opened, Failure> {
        let what = self.describe();
        let just_logged_in = std::mem::take(&mut self.logged_in_again);
        let mut state = None;
        let mut start = self.next_revision;
        if read_state_first {
            let options = self.prefix.then(|| GetOptions::new().with_prefix());
            // A kv client with the same raised limit: the state under a prefix can be as big as a replay.
            let got = client
                .kv_client()
                .max_decoding_message_size(self.max_response)
                .get(self.key.clone(), options)
                .await
                .map_err(failed(
                    format!("read the state of {what}"),
                    self.max_response,
                ))?;
            start = Some(got.header().map_or(0, |h| h.revision()) + 1);
            state = Some(got);
        }

        let mut options = WatchOptions::new();
        if self.prefix {
            options = options.with_prefix();
        }
        if let Some(start) = start {
            options = options.with_start_revision(start);
        }
        // Not `client.watch`, which keeps etcd-client's 4 MiB limit: see MAX_RESPONSE.
        let mut stream = client
            .watch_client()
            .max_decoding_message_size(self.max_response)
            .watch(self.key.clone(), Some(options))
            .await
            .map_err(failed(format!("open a watch on {what}"), self.max_response))?;
        // `watch` returns once the stream is open; the watch exists when etcd answers `created`.
        let created = stream
            .message()
            .await
            .map_err(failed(
                format!("wait for etcd to confirm the watch on {what}"),
                self.max_response,
            ))?
            .ok_or_else(|| {
                Failure::Retry(anyhow!(
                    "etcd closed the stream before confirming the watch on {what}"
                ))
            })?;
        // With auth enabled, the login token expired, or etcd restarted and forgot every token.
        // etcd-client's automatic token refresh covers a call that fails, but etcd refuses a watch inside
        // the stream, where the refresh does not look: log in again here, then retry. etcd 3.4 says
        // "invalid auth token"; etcd 3.5 says "permission denied", as it does to a user whose roles do not
        // allow the watch, so that is refused only when it comes again right after a fresh login.
        let reason = created.cancel_reason();
        let unknown_token = reason.contains("invalid auth token");
        let maybe_unknown_token = reason.contains("permission denied") && !just_logged_in;
        if created.canceled() && (unknown_token || maybe_unknown_token) {
            client.refresh_token().await.map_err(failed(
                format!("log in again for the watch on {what}"),
                self.max_response,
            ))?;
            self.logged_in_again = true;
            return Err(Failure::Retry(if unknown_token {
                anyhow!(
                    "etcd no longer knew the auth token of the watch on {what}; logged in again"
                )
            } else {
                anyhow!(
                    "etcd denied the watch on {what}, as etcd 3.5 does for an auth token it no longer \
                     knows; logged in again"
                )
            }));
        }
        if created.canceled() {
            return Err(Failure::Refused(anyhow!(
                "etcd refused the watch on {what}: {}",
                created.cancel_reason()
            )));
        }
        if !created.created() {
            return Err(Failure::Retry(anyhow!(
                "etcd answered the watch on {what} with something other than a confirmation"
            )));
        }
        // Without a start revision, etcd reports what comes after the store revision in its confirmation.
        let start_revision =
            start.unwrap_or_else(|| created.header().map_or(0, |h| h.revision()) + 1);
        self.next_revision = Some(start_revision);
        debug!(
            "watch {} on {what} open from revision {start_revision}",
            created.watch_id()
        );
        Ok(Opened {
            stream,
            watch_id: created.watch_id(),
            start_revision,
            state,
        })
    }

    fn describe(&self) -> String {
        let key = String::from_utf8_lossy(&self.key);
        if self.prefix {
            format!("every key under {key}")
        } else {
            key.into_owned()
        }
    }
}

/// A watch that stayed open this long counts as one that worked, even if nothing changed meanwhile.
pub const STABLE: Duration = Duration::from_secs(10);

/// Counts the watches in a row that broke before they were of any use, and says how long to wait before
/// opening the next one.
///
/// A retry loop that only backs off when *opening* fails still spins if the watch opens fine and then
/// breaks at once, every time (a reply the client cannot take, a member that drops every stream): each
/// round is a successful open, so the pause never grows. Use it around any loop that re-opens a stream:
/// call [`opened`](Self::opened) when the stream is confirmed, [`delivered`](Self::delivered) when it
/// brings something, and [`broke`](Self::broke) when it ends, then wait what `broke` returns. A watch
/// that delivered something, or stayed open for [`STABLE`], resets the count.
#[derive(Debug, Default, Clone)]
pub struct QuickBreaks {
    in_a_row: Backoff,
    opened_at: Option<Instant>,
    delivered: bool,
}

impl QuickBreaks {
    /// The stream is open and confirmed.
    pub fn opened(&mut self) {
        self.opened_at = Some(Instant::now());
        self.delivered = false;
    }

    /// The stream brought events: it works.
    pub fn delivered(&mut self) {
        self.delivered = true;
    }

    /// The stream ended: the pause to take before opening the next one. Zero when it worked (or when
    /// nothing was open), [`Backoff::default`] growing with each quick break in a row otherwise.
    pub fn broke(&mut self) -> Duration {
        let quick = self
            .opened_at
            .take()
            .is_some_and(|at| !self.delivered && at.elapsed() < STABLE);
        if !quick {
            self.in_a_row.reset();
            return Duration::ZERO;
        }
        self.in_a_row.next_pause()
    }
}

impl ResumingWatch {
    /// Reads what the watched keys hold now with one GET, and opens the watch from the revision right
    /// after that read, for [`next`](Self::next) to go on from: the start of a watcher that keeps a copy of
    /// the keys (a cache, the instances of a service), which needs the state first and then every change
    /// after it. Go's `cli.Get(ctx, key, clientv3.WithPrefix())`, then `cli.Watch(ctx, key,
    /// clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision + 1))`.
    ///
    /// Retries like [`catch_up`](Self::catch_up), each attempt bounded by the attempt timeout. A stream
    /// it held before is closed, and the events [`next`](Self::next) delivered last are not counted as
    /// handled: the read covers them.
    pub async fn read_then_watch(
        &mut self,
        client: &Client,
        on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<GetResponse> {
        self.open = None;
        self.delivered_up_to = None;
        let mut opened = self
            .catch_up(client, self.attempt_timeout, on_retry)
            .await?;
        let state = opened
            .state
            .take()
            .ok_or_else(|| anyhow!("no read of {} came with the watch", self.describe()))?;
        self.open = Some(opened);
        Ok(state)
    }
}

/// Cancels the watch `watch_id` on the server and waits, at most `limit`, for etcd to confirm it: `true`
/// once etcd answered `canceled`, `false` if it did not in time or the stream is gone.
///
/// `WatchStream::cancel` only queues the request: a program that exits right after it may close the
/// connection before the request leaves. etcd's `canceled` answer proves it dropped the watch. Changes
/// still on their way come first and are dropped, as the caller has stopped. `false` is harmless: etcd
/// drops a watch when its stream closes. Use it on the way out of a watcher, with the dial timeout.
pub async fn cancel(stream: &mut WatchStream, watch_id: i64, limit: Duration) -> bool {
    let confirmed = async {
        stream.cancel(watch_id).await?;
        while let Some(reply) = stream.message().await? {
            if reply.canceled() && reply.watch_id() == watch_id {
                return Ok(true);
            }
        }
        Ok::<bool, etcd_client::Error>(false)
    };
    match tokio::time::timeout(limit, confirmed).await {
        Ok(Ok(confirmed)) => confirmed,
        Ok(Err(e)) => {
            debug!("cannot cancel watch {watch_id}: {e}");
            false
        }
        Err(_) => false,
    }
}

/// Waits for the first PUT of `key`, watching every key under `prefix` from revision `from`, and returns the
/// key-value it wrote. For a program that must see another's write land before it goes on (a contender
/// queued, a candidate registered): watching from a revision read before, nothing written in between is
/// missed. One watch, not resumed: bound the wait with `tokio::time::timeout`.
pub async fn first_put(
    client: &Client,
    prefix: &str,
    key: &str,
    from: i64,
) -> Result<etcd_client::KeyValue> {
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut watch = client
        .watch_client()
        .max_decoding_message_size(MAX_RESPONSE)
        .watch(prefix, Some(options))
        .await
        .map_err(|e| anyhow!(e).context(format!("watch {prefix}")))?;
    // Dropping `watch` on return closes the watch.
    loop {
        let Some(resp) = watch.message().await? else {
            return Err(anyhow!("etcd closed the watch on {prefix}"));
        };
        if resp.canceled() {
            return Err(anyhow!(
                "etcd cancelled the watch on {prefix}: {}",
                resp.cancel_reason()
            ));
        }
        let put = resp
            .events()
            .iter()
            .filter(|event| event.event_type() == etcd_client::EventType::Put)
            .filter_map(|event| event.kv())
            .find(|kv| kv.key() == key.as_bytes());
        if let Some(kv) = put {
            return Ok(kv.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_breaks_in_a_row_wait_longer_and_a_working_watch_resets_them() {
        let mut breaks = QuickBreaks::default();
        assert_eq!(breaks.broke(), Duration::ZERO, "nothing was open yet");
        let mut pauses = Vec::new();
        for _ in 0..4 {
            breaks.opened();
            pauses.push(breaks.broke().as_millis());
        }
        assert_eq!(pauses, [200, 400, 800, 1600]);
        breaks.opened();
        breaks.delivered();
        assert_eq!(breaks.broke(), Duration::ZERO, "it delivered: it worked");
        breaks.opened();
        assert_eq!(
            breaks.broke(),
            Duration::from_millis(200),
            "the count starts over"
        );
    }

    #[test]
    fn a_watch_is_described_as_the_user_named_it() {
        assert_eq!(ResumingWatch::new("name", false, None).describe(), "name");
        assert_eq!(
            ResumingWatch::new("/app/", true, Some(3)).describe(),
            "every key under /app/"
        );
    }
}
