//! The reusable part of the `watch` topic: a watch that picks up where it left off after a lost stream or
//! a compacted history, and the growing pause between its retries.
//!
//! The one idea to take away: a watch is a position in etcd's history, not a live feed. Every change has a
//! revision, so a watcher that remembers the next revision it has not handled can always ask for
//! "everything from there", on a new stream, without missing or repeating a change, as long as etcd still
//! keeps that part of its history (compaction drops it).
//!
//! `src/main.rs` makes each `etcd-client` call of the topic itself, where it explains it; it uses
//! [`ResumableWatch::reopen`] when the connection breaks. This file depends only on `etcd-client`, `tokio`,
//! `anyhow` and `log`, so it can be copied into a service as is (see the topic README, "Use it in your
//! project").

use std::time::Duration;

use anyhow::{anyhow, Result};
use etcd_client::{Client, GetOptions, GetResponse, WatchOptions, WatchResponse, WatchStream};
use log::debug;

/// A watch on a key (or a prefix) that remembers the next revision to ask for, so it can be opened again
/// after the stream breaks, and read the current state when the history it needs was compacted.
///
/// Use it in a service that must act on every change exactly once and keeps running through etcd
/// restarts, network drops and compaction: a config watcher, a cache kept in sync with a prefix. It holds
/// no stream; [`reopen`](Self::reopen) and [`catch_up`](Self::catch_up) hand you one, confirmed by etcd,
/// and you read it with `stream.message()`:
///
/// ```no_run
/// # async fn follow(client: &mut etcd_client::Client) -> anyhow::Result<()> {
/// use std::time::Duration;
/// use watch::ResumableWatch;
///
/// let timeout = Duration::from_secs(5);
/// let log_retry = |attempt: u32, error: &anyhow::Error, pause: Duration| {
///     log::warn!("watch attempt {attempt} failed ({error:#}); retrying in {pause:?}")
/// };
/// let mut watch = ResumableWatch::new("/config/", true, None);
/// let mut opened = watch.reopen(client, timeout, log_retry).await?;
/// loop {
///     match opened.stream.message().await {
///         // The history we asked for is gone: start over from the current state.
///         Ok(Some(resp)) if resp.canceled() && resp.compact_revision() > 0 => {
///             opened = watch.catch_up(client, timeout, log_retry).await?;
///             let state = opened.state.as_ref().expect("catch_up reads the state");
///             // ... rebuild what you keep from state.kvs() ...
///         }
///         Ok(Some(resp)) if resp.canceled() => {
///             anyhow::bail!("etcd canceled the watch: {}", resp.cancel_reason())
///         }
///         Ok(Some(resp)) => {
///             for event in resp.events() {
///                 // ... apply the event ...
///             }
///             watch.advance(&resp); // after applying, so a crash in between replays, not skips
///         }
///         // etcd restarted, the network dropped: open again from where we were.
///         Ok(None) | Err(_) => opened = watch.reopen(client, timeout, log_retry).await?,
///     }
/// }
/// # }
/// ```
///
/// Give it a `Client` built with `ConnectOptions::with_keep_alive`, so that a server which vanished
/// without closing the connection is noticed. The same `Client` can be used for every reopen: its channel
/// connects again by itself once etcd is back (`tests/steps.rs` checks that across an etcd restart).
/// For more `WatchOptions` (`with_prev_key`, filters), add them where `try_open` builds its options.
#[derive(Debug, Clone)]
pub struct ResumableWatch {
    key: Vec<u8>,
    prefix: bool,
    next_revision: Option<i64>,
}

/// A watch that etcd has confirmed, from [`ResumableWatch::reopen`] or [`ResumableWatch::catch_up`].
#[derive(Debug)]
pub struct Opened {
    /// Read changes with `stream.message()`; stop with `stream.cancel(watch_id)`.
    pub stream: WatchStream,
    /// etcd's name for this watch on the stream, needed to cancel it.
    pub watch_id: i64,
    /// The first revision this watch reports.
    pub start_revision: i64,
    /// From [`ResumableWatch::catch_up`] only: what the watched keys held when the watch started, read
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

/// For `map_err`: an etcd-client error, with what we were doing, as a failure worth retrying.
fn retry(doing: String) -> impl FnOnce(etcd_client::Error) -> Failure {
    move |e| Failure::Retry(anyhow!(e).context(doing))
}

impl ResumableWatch {
    /// A watch on `key` (every key starting with `key` if `prefix`), to be opened from revision `from`;
    /// `None` means "changes after now", pinned to a number when the watch is first opened.
    pub fn new(key: impl Into<Vec<u8>>, prefix: bool, from: Option<i64>) -> ResumableWatch {
        ResumableWatch {
            key: key.into(),
            prefix,
            next_revision: from,
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
        }
    }

    /// Opens the watch from [`next_revision`](Self::next_revision), and waits until etcd confirms it.
    ///
    /// Use it to open the watch the first time, and again whenever its stream ends or fails. Changes made
    /// while no watch was open are still in etcd's history and come first; none is repeated. Each attempt
    /// is bounded by `attempt_timeout`, because a request to a server that vanished can wait forever.
    /// After a failed attempt, `on_retry(attempt, error, pause)` is called and the next one waits `pause`,
    /// see [`backoff`]. It retries until etcd answers; it returns an error only when etcd refuses the
    /// watch itself. It is safe to drop while it waits (in `tokio::select!` with a shutdown signal, for
    /// instance): the position is only moved once a watch is open.
    ///
    /// If that part of the history was compacted, etcd still confirms the watch, then cancels it with
    /// `compact_revision()` set: call [`catch_up`](Self::catch_up) when you read that.
    pub async fn reopen(
        &mut self,
        client: &mut Client,
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
        client: &mut Client,
        attempt_timeout: Duration,
        on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<Opened> {
        self.open_with_backoff(client, attempt_timeout, true, on_retry)
            .await
    }

    async fn open_with_backoff(
        &mut self,
        client: &mut Client,
        attempt_timeout: Duration,
        read_state_first: bool,
        mut on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<Opened> {
        let mut failures: u32 = 0;
        loop {
            let attempt = self.try_open(client, read_state_first);
            let error = match tokio::time::timeout(attempt_timeout, attempt).await {
                Ok(Ok(opened)) => return Ok(opened),
                Ok(Err(Failure::Refused(error))) => return Err(error),
                Ok(Err(Failure::Retry(error))) => error,
                Err(_) => anyhow!("etcd did not answer within {attempt_timeout:?}"),
            };
            let pause = backoff(failures);
            failures = failures.saturating_add(1);
            debug!("watch attempt {failures} failed: {error:#}");
            on_retry(failures, &error, pause);
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt: (the GET, then) the watch request and etcd's confirmation.
    async fn try_open(
        &mut self,
        client: &mut Client,
        read_state_first: bool,
    ) -> Result<Opened, Failure> {
        let what = self.describe();
        let mut state = None;
        let mut start = self.next_revision;
        if read_state_first {
            let options = self.prefix.then(|| GetOptions::new().with_prefix());
            let got = client
                .get(self.key.clone(), options)
                .await
                .map_err(retry(format!("read the state of {what}")))?;
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
        let mut stream = client
            .watch(self.key.clone(), Some(options))
            .await
            .map_err(retry(format!("open a watch on {what}")))?;
        // `watch` returns once the stream is open; the watch exists when etcd answers `created`.
        let created = stream
            .message()
            .await
            .map_err(retry(format!(
                "wait for etcd to confirm the watch on {what}"
            )))?
            .ok_or_else(|| {
                Failure::Retry(anyhow!(
                    "etcd closed the stream before confirming the watch on {what}"
                ))
            })?;
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

/// How long to wait after failed attempt number `failures + 1` (0 for the first failure): 0.2 s, doubling
/// each time, capped at 5 s.
///
/// Use it for any loop that retries a call to etcd. Waiting longer and longer keeps many clients from
/// hammering an etcd that is coming back up (or a CPU from spinning on an error that does not go away);
/// the cap keeps a client from sleeping long after etcd is back.
pub fn backoff(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(5);
    FIRST.saturating_mul(2u32.saturating_pow(failures)).min(CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_stays_at_the_cap() {
        let waits: Vec<u128> = (0..7).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5), "no overflow");
    }

    #[test]
    fn a_watch_is_described_as_the_user_named_it() {
        assert_eq!(ResumableWatch::new("name", false, None).describe(), "name");
        assert_eq!(
            ResumableWatch::new("/app/", true, Some(3)).describe(),
            "every key under /app/"
        );
    }
}
