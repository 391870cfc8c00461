//! The client calls behind `cargo run -p watch`, one small function per step, so each can be copied into a
//! service on its own. `main.rs` strings them together into a watcher that survives restarts.
//!
//! The one idea to take away: a watch is a position in etcd's history, not a live feed. Every change has a
//! revision, so a watcher that remembers the last revision it handled can always ask for "everything after
//! that", on a new connection, without missing or repeating a change, as long as etcd still keeps that
//! part of its history (it is dropped by compaction).

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{Client, Event, EventType, GetOptions, WatchOptions, WatchResponse, WatchStream};
use etcd_connect::show_bytes;
use log::debug;

/// What to watch: one key, or every key that starts with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub key: String,
    pub prefix: bool,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix {
            write!(f, "every key under {}", self.key)
        } else {
            write!(f, "{}", self.key)
        }
    }
}

/// One change reported by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put {
        key: String,
        value: String,
        revision: i64,
    },
    Delete {
        key: String,
        revision: i64,
    },
}

impl Change {
    /// The store revision of this change: the event's `mod_revision`. It is what a watcher remembers to
    /// resume from. (For a delete, etcd sets `mod_revision` to the revision of the deletion.)
    pub fn revision(&self) -> i64 {
        match self {
            Change::Put { revision, .. } | Change::Delete { revision, .. } => *revision,
        }
    }

    /// Reads one watch event. `None` only if etcd sent an event without its key, which it does not do.
    pub fn from_event(event: &Event) -> Option<Change> {
        let kv = event.kv()?;
        let key = show_bytes(kv.key());
        let revision = kv.mod_revision();
        Some(match event.event_type() {
            EventType::Put => Change::Put {
                key,
                value: show_bytes(kv.value()),
                revision,
            },
            // A delete event carries the key only: the value is gone (ask for prev_kv to get it).
            EventType::Delete => Change::Delete { key, revision },
        })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Put {
                key,
                value,
                revision,
            } => write!(f, "PUT {key} = {value} (revision {revision})"),
            Change::Delete { key, revision } => write!(f, "DELETE {key} (revision {revision})"),
        }
    }
}

/// An open watch, confirmed by etcd.
#[derive(Debug)]
pub struct Watch {
    stream: WatchStream,
    /// etcd's name for this watch on the stream; needed to cancel it.
    pub id: i64,
    /// The first revision this watch reports. Without `--rev` it is "whatever comes after now", which
    /// etcd pins down in its confirmation: we remember it as a number so that a reconnect can resume from
    /// it instead of from a later "now" that would skip what happened in between.
    pub start_revision: i64,
}

/// What the next message on a watch means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// One or more changes, in revision order.
    Changes(Vec<Change>),
    /// The history we asked for is gone: etcd compacted everything before `compact_revision`. etcd has
    /// canceled the watch, and asking again from the same revision would fail again.
    Compacted { compact_revision: i64 },
    /// The stream broke or ended: etcd restarted, the network dropped, the connection timed out.
    /// Nothing is wrong with the watch itself; open it again from where we were.
    Lost(String),
    /// etcd canceled the watch for another reason (permissions, for example). Retrying will not help.
    Refused(String),
}

/// Step 1: open a watch and wait until etcd confirms it.
///
/// `start` is the first revision to report; `None` means "changes after now". `Client::watch` returns as
/// soon as the stream is open, but the watch only exists once etcd answers with a `created` response: only
/// then is a write guaranteed to be seen, so only then should a program say it is watching.
pub async fn open(client: &mut Client, target: &Target, start: Option<i64>) -> Result<Watch> {
    let mut options = WatchOptions::new();
    if target.prefix {
        options = options.with_prefix();
    }
    if let Some(revision) = start {
        options = options.with_start_revision(revision);
    }
    let mut stream = client
        .watch(target.key.as_str(), Some(options))
        .await
        .with_context(|| format!("cannot open a watch on {target}"))?;
    let confirmation = stream
        .message()
        .await
        .with_context(|| format!("no confirmation for the watch on {target}"))?
        .with_context(|| {
            format!("etcd closed the stream before confirming the watch on {target}")
        })?;
    if !confirmation.created() {
        bail!("etcd answered the watch on {target} with something other than a confirmation");
    }
    // A compacted start revision is not refused here: etcd confirms the watch, then cancels it with
    // `compact_revision` set, which `Watch::next` reports as `Next::Compacted`.
    if confirmation.canceled() {
        bail!(
            "etcd refused the watch on {target}: {}",
            confirmation.cancel_reason()
        );
    }
    // The confirmation's header holds the store revision at the moment the watch was created; a watch
    // "from now" reports every change after it.
    let now = confirmation.header().map_or(0, |h| h.revision());
    let start_revision = start.unwrap_or(now + 1);
    debug!(
        "watch {} on {target} created at store revision {now}, reporting from revision {start_revision}",
        confirmation.watch_id()
    );
    Ok(Watch {
        stream,
        id: confirmation.watch_id(),
        start_revision,
    })
}

impl Watch {
    /// Step 2: wait for the next thing that matters on this watch.
    ///
    /// Safe to use inside `tokio::select!`: if it is dropped while waiting, no message is lost.
    pub async fn next(&mut self) -> Next {
        loop {
            let response = match self.stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return Next::Lost("etcd closed the stream".into()),
                Err(e) => return Next::Lost(etcd_connect::short_error(&e)),
            };
            if let Some(next) = interpret(&response) {
                return next;
            }
            // Anything else (a progress notification, for instance) carries no change: keep waiting.
            debug!("watch response without events: {response:?}");
        }
    }

    /// Step 5: cancel the watch on the server, and wait (up to `limit`) for etcd to confirm it.
    ///
    /// `WatchStream::cancel` only queues the request; exiting right after it could close the connection
    /// before the request leaves. Waiting for the `canceled` answer proves etcd dropped the watch. Returns
    /// whether it was confirmed; unconfirmed is harmless, as etcd drops a watch when its stream closes.
    pub async fn cancel(mut self, limit: Duration) -> bool {
        let id = self.id;
        if let Err(e) = self.stream.cancel(id).await {
            // The stream is already closed, so the server has dropped the watch anyway.
            debug!("cannot send the cancel for watch {id}: {e}");
            return false;
        }
        let confirmed = tokio::time::timeout(limit, async {
            loop {
                match self.stream.message().await {
                    Ok(Some(r)) if r.canceled() && r.watch_id() == id => return true,
                    // Changes that were already on their way; we have stopped, so they are dropped.
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return false,
                }
            }
        })
        .await;
        confirmed.unwrap_or(false)
    }
}

/// Sorts one watch response into what a caller acts on; `None` for responses without changes.
fn interpret(response: &WatchResponse) -> Option<Next> {
    if response.canceled() {
        return Some(if response.compact_revision() > 0 {
            Next::Compacted {
                compact_revision: response.compact_revision(),
            }
        } else {
            Next::Refused(response.cancel_reason().to_string())
        });
    }
    let changes: Vec<Change> = response
        .events()
        .iter()
        .filter_map(Change::from_event)
        .collect();
    (!changes.is_empty()).then_some(Next::Changes(changes))
}

/// One key as a GET returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub mod_revision: i64,
}

/// Step 3 (after a compaction): read what the watched keys hold now, with the store revision of the read.
///
/// When the history is gone, the changes in it cannot be replayed, but the state they led to can be read.
/// A GET is a snapshot at one revision; watching from that revision + 1 continues exactly after it, so
/// nothing between the snapshot and the new watch is missed.
pub async fn current_state(client: &mut Client, target: &Target) -> Result<(i64, Vec<Entry>)> {
    let options = target.prefix.then(|| GetOptions::new().with_prefix());
    let resp = client
        .get(target.key.as_str(), options)
        .await
        .with_context(|| format!("cannot read the current state of {target}"))?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let entries = resp
        .kvs()
        .iter()
        .map(|kv| Entry {
            key: show_bytes(kv.key()),
            value: show_bytes(kv.value()),
            mod_revision: kv.mod_revision(),
        })
        .collect();
    Ok((revision, entries))
}

/// How long to wait before reconnect attempt number `attempt` (0 for the first): 0.2 s, doubling each
/// time, capped at 5 s. Waiting longer and longer keeps many watchers from hammering an etcd that is
/// coming back up; the cap keeps a watcher from sleeping long after etcd is back.
pub fn backoff(attempt: u32) -> Duration {
    const FIRST: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(5);
    FIRST.saturating_mul(2u32.saturating_pow(attempt)).min(CAP)
}

/// `--rev`: a store revision, 1 or more (revision 0 would mean "now" to etcd, which is the default).
pub fn parse_revision(raw: &str) -> Result<i64> {
    match raw.trim().parse::<i64>() {
        Ok(rev) if rev >= 1 => Ok(rev),
        _ => bail!("`{raw}` is not a revision: give a whole number, 1 or more"),
    }
}

/// `--count`: how many changes to print before exiting, 1 or more.
pub fn parse_count(raw: &str) -> Result<u64> {
    match raw.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => bail!("`{raw}` is not a count: give a whole number, 1 or more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_print_as_one_plain_line() {
        let put = Change::Put {
            key: "name".into(),
            value: "hello".into(),
            revision: 42,
        };
        assert_eq!(put.to_string(), "PUT name = hello (revision 42)");
        let delete = Change::Delete {
            key: "name".into(),
            revision: 43,
        };
        assert_eq!(delete.to_string(), "DELETE name (revision 43)");
    }

    #[test]
    fn backoff_doubles_then_stays_at_the_cap() {
        let waits: Vec<u128> = (0..7).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5), "no overflow");
    }

    #[test]
    fn revisions_and_counts_start_at_one() {
        assert_eq!(parse_revision("7").unwrap(), 7);
        assert_eq!(parse_count("3").unwrap(), 3);
        for bad in ["0", "-1", "x", "", "1.5"] {
            assert!(parse_revision(bad).is_err(), "--rev {bad:?} was accepted");
            assert!(parse_count(bad).is_err(), "--count {bad:?} was accepted");
        }
    }
}
