//! The reusable part of the `keepalive` topic: [`KeptLease`], which keeps a lease alive with the two ends
//! of an etcd-client keep-alive stream: it renews every TTL/3, reads what etcd answers, and re-opens the
//! stream when it breaks.
//!
//! Every other call of the topic is one `etcd-client` call, and `src/main.rs` makes it where it explains
//! it. This file depends only on `etcd-client`, `tokio`, `anyhow` and `log`, so it can be copied into a
//! service as is (see the topic README, "Use it in your project").

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use log::debug;

/// First pause between attempts to re-open a broken keep-alive stream. It doubles after each failed
/// attempt, up to [`MAX_PAUSE`] (or a third of the TTL, if that is shorter), so an etcd that is down or
/// stalled is not asked in a busy loop, and one that comes back is asked again soon.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// What etcd answered to one renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease is renewed: it now has `ttl` seconds again.
    Alive { ttl: i64 },
    /// etcd answered with TTL 0: the lease no longer exists (it expired, or someone revoked it), and the
    /// keys that were still attached to it are deleted. Renewing cannot bring it back.
    /// [`KeptLease::why_gone`] says which, when timing can tell.
    Gone,
}

/// A lease kept alive by this program, holding both ends of its keep-alive stream.
///
/// Use it for any key that must live exactly as long as your process: a service registration, a leader
/// or lock key, a heartbeat. Go's `KeepAlive` starts a goroutine that renews on its own; etcd-client
/// does not. `client.lease_keep_alive(id)` returns a [`LeaseKeeper`] (the sending end: each
/// `keep_alive()` sends ONE renewal) and a [`LeaseKeepAliveStream`] (the receiving end: one answer per
/// renewal). Nothing is sent unless you send it, so this type does the timing ([`Self::renew_when_due`]),
/// says what an answer means ([`Renewal`]), and re-opens the stream when the connection breaks
/// ([`Self::reopen`]), for as long as the lease can still be alive.
///
/// Dropping it stops the renewals but does not end the lease: etcd deletes the keys only when the TTL
/// runs out. Call `client.lease_revoke(id)` to end it now.
pub struct KeptLease {
    pub id: i64,
    /// The TTL in seconds, as granted by the server.
    pub ttl: i64,
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
    /// When we sent the last renewal that etcd confirmed. The server renewed it a little after that, so
    /// the lease surely lives until `renewed_at + TTL`.
    renewed_at: Instant,
    next_renewal: Instant,
}

impl KeptLease {
    /// Takes over the two ends that `client.lease_keep_alive(id)` just returned, for a lease granted
    /// with `ttl` seconds. Call it right after that call: `lease_keep_alive` already sent one renewal and
    /// read its answer before returning (so it fails for a lease that no longer exists), and the lease's
    /// countdown is taken to restart now. The first renewal of its own is due a third of the TTL later.
    pub fn new(id: i64, ttl: i64, keeper: LeaseKeeper, answers: LeaseKeepAliveStream) -> KeptLease {
        let now = Instant::now();
        KeptLease {
            id,
            ttl,
            keeper,
            answers,
            renewed_at: now,
            next_renewal: now + third_of(ttl),
        }
    }

    /// How often it renews: a third of the TTL, so one lost or late renewal still leaves time for another
    /// before the lease runs out. (Go's client renews at TTL/3 too.)
    ///
    /// It also sets the longest etcd freeze (SIGSTOP, a stalled disk, a paused VM) the lease is sure to
    /// survive: two thirds of the TTL, less a second, not any freeze shorter than the TTL. When a freeze
    /// starts, the last renewal etcd served may be up to this period old, and the lease ends one TTL after
    /// it. The renewal sent during the freeze waits in the open connection and etcd serves it as soon as
    /// it runs again, so the freeze must end before that TTL is over, with a second for etcd to wake up
    /// and serve it. With a TTL of 5 s, a 4 s freeze is ridden out only if it starts less than 1 s after a
    /// renewal. (If the client's HTTP/2 keep-alive pings give up on the connection during the freeze, the
    /// renewal waits for a stream re-opened on a new connection: count up to [`MAX_PAUSE`] more.) For
    /// longer freezes, ask for a longer TTL.
    pub fn renew_every(&self) -> Duration {
        third_of(self.ttl)
    }

    /// The moment the lease ends unless a renewal reaches etcd first.
    pub fn deadline(&self) -> Instant {
        self.renewed_at + Duration::from_secs(self.ttl.max(0) as u64)
    }

    /// Waits until the next renewal is due, sends it, and reads etcd's answer. Call it in a loop.
    ///
    /// An error means the stream is broken (connection lost, no answer in time): call [`Self::reopen`].
    /// Cancelling this (as `tokio::select!` does) is fine when you stop using the lease afterwards; an
    /// answer already on its way would otherwise be read by the next call.
    pub async fn renew_when_due(&mut self) -> Result<Renewal> {
        tokio::time::sleep_until(self.next_renewal.into()).await;
        let every = self.renew_every();
        let sent_at = Instant::now();
        self.next_renewal = sent_at + every;

        // Sending fails only once the stream under it has ended (etcd-client then says "channel closed"):
        // the connection to etcd broke. That says nothing about the lease, so it is not passed on as
        // etcd-client's `LeaseKeepAliveError`, whose name reads as if the lease were gone.
        if let Err(e) = self.keeper.keep_alive().await {
            debug!("sending a keep-alive request failed: {e}");
            bail!("the connection to etcd broke");
        }
        // An answer later than the next renewal is as good as none: treat the stream as broken.
        let answer = tokio::time::timeout(every, self.answers.message())
            .await
            .map_err(|_| anyhow!("no keep-alive answer within {every:.1?}"))?
            .map_err(|e| anyhow!("keep-alive stream failed: {}", brief(&e)))?
            .ok_or_else(|| anyhow!("etcd closed the keep-alive stream"))?;
        debug!("keep-alive answer: {answer:?}");

        if answer.ttl() <= 0 {
            return Ok(Renewal::Gone);
        }
        self.renewed_at = sent_at;
        Ok(Renewal::Alive { ttl: answer.ttl() })
    }

    /// Re-opens a broken keep-alive stream with `client.lease_keep_alive(id)`, which also renews the
    /// lease, until the lease's [`deadline`](Self::deadline). Past it etcd has ended the lease (or is
    /// about to), so this fails rather than pretend the keys still exist. It fails at once when etcd says
    /// the lease is gone.
    ///
    /// Each attempt is bounded by a third of the TTL: an etcd that accepts connections but does not
    /// answer (stalled, frozen, overloaded) would otherwise hold the first attempt until the deadline,
    /// even if it recovers in between. Between attempts it pauses, a little longer each time (capped).
    pub async fn reopen(&mut self, client: &mut Client) -> Result<()> {
        let id = self.id;
        let deadline = self.deadline();
        let every = self.renew_every();
        let mut pause = FIRST_PAUSE;
        let mut last_error = String::from("no attempt finished in time");
        while Instant::now() < deadline {
            let sent_at = Instant::now();
            let attempt_ends = deadline.min(sent_at + every);
            match tokio::time::timeout_at(attempt_ends.into(), client.lease_keep_alive(id)).await {
                Ok(Ok((keeper, answers))) => {
                    self.keeper = keeper;
                    self.answers = answers;
                    self.renewed_at = sent_at;
                    self.next_renewal = sent_at + every;
                    return Ok(());
                }
                // etcd answered, with TTL 0: `lease_keep_alive` reports that as this error, "lease not
                // found" (it uses the same error when it cannot send, which is no news about the lease).
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(why)))
                    if why == "lease not found" =>
                {
                    bail!("lease {id:016x} is gone ({why}): {}", self.why_gone())
                }
                Ok(Err(e)) => {
                    last_error = brief(&e);
                    debug!("re-opening the keep-alive stream for lease {id:016x} failed: {e}");
                }
                Err(_) => {
                    last_error = format!("no answer within {:.1?}", attempt_ends - sent_at);
                    debug!("re-opening the keep-alive stream for lease {id:016x}: {last_error}");
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(MAX_PAUSE).min(every);
        }
        bail!(
            "could not renew lease {id:016x} within its TTL of {}s, so etcd deletes its keys as soon as it \
             sees the TTL run out (last error: {last_error})",
            self.ttl
        )
    }

    /// Why a lease that etcd reports gone is gone, as far as timing can tell. etcd renewed the lease no
    /// earlier than our last confirmed renewal was sent, so it cannot expire before [`Self::deadline`]:
    /// gone before that instant means revoked (`etcdctl lease revoke`, or another client's
    /// `lease_revoke`). Gone after it may be either: etcd answers TTL 0 for both.
    pub fn why_gone(&self) -> String {
        let now = Instant::now();
        match self.deadline().checked_duration_since(now) {
            Some(left) if !left.is_zero() => format!(
                "it was revoked, since it still had {left:.1?} of its {}s TTL left by our last renewal",
                self.ttl
            ),
            _ => "it expired or was revoked (its TTL had run out since our last renewal, so etcd's \
                  answer cannot tell which)"
                .to_string(),
        }
    }
}

/// A third of `ttl_secs` (at least a third of a second).
fn third_of(ttl_secs: i64) -> Duration {
    Duration::from_secs(ttl_secs.max(1) as u64) / 3
}

/// An etcd-client error in the words a user can act on. A gRPC status prints as a long dump of code,
/// message, details and metadata; its message and innermost cause (`Connection refused (os error 111)`)
/// say what happened. Full errors stay in the debug log.
fn brief(e: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return e.to_string();
    };
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(status);
    while let Some(deeper) = cause.and_then(|c| c.source()) {
        cause = Some(deeper);
    }
    match cause {
        Some(cause) => format!("{} ({cause})", status.message()),
        None => status.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::third_of;
    use std::time::Duration;

    #[test]
    fn renewals_come_every_third_of_the_ttl() {
        assert_eq!(third_of(6), Duration::from_secs(2));
        assert_eq!(third_of(3), Duration::from_secs(1));
        assert_eq!(third_of(0), Duration::from_secs(1) / 3);
    }
}
