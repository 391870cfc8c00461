//! A lease that lives exactly as long as your process: [`KeptLease`] renews it when you ask (Go's
//! `KeepAlive`, which etcd-client leaves to you), and [`Session`] renews it in the background (Go's
//! `concurrency.NewSession`), for a lock or an election.
//!
//! Depends on `etcd-client`, `tokio`, `anyhow` and `log`, and on its sibling `errors.rs` (for [`Backoff`]
//! and [`explain`]): copy the two files.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use log::debug;
use tokio::task::JoinHandle;

use crate::errors::{explain, Backoff};

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
    /// renewal waits for a stream re-opened on a new connection: count up to 2 s more.) For
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
            .map_err(|e| anyhow!("keep-alive stream failed: {}", explain(&e)))?
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
        // Pauses grow, but stay within a renewal period: the lease has only its TTL left.
        let mut backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE.min(every));
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
                    bail!(
                        "lease {id:016x} is gone: etcd says it no longer exists ({why}); {}",
                        self.why_gone()
                    )
                }
                Ok(Err(e)) => {
                    last_error = explain(&e);
                    debug!("re-opening the keep-alive stream for lease {id:016x} failed: {e}");
                }
                Err(_) => {
                    last_error = format!("no answer within {:.1?}", attempt_ends - sent_at);
                    debug!("re-opening the keep-alive stream for lease {id:016x}: {last_error}");
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(backoff.next_pause().min(left)).await;
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

/// A lease kept alive in the background for as long as this process runs: Go's `concurrency.Session`.
///
/// Use it for every lock you take and every campaign you run: grant a lease
/// (`client.lease_grant(ttl, None)`), start a session on it, and lock with
/// `LockOptions::new().with_lease(session.lease_id())` (or campaign with it). etcd-client does not renew a
/// lease by itself; without this task the lease, and the lock with it, would expire after `ttl` seconds
/// although the holder is still working. When the process dies, the renewals stop and etcd frees its
/// locks one TTL later.
///
/// The renewals are a [`KeptLease`] in a task of its own, so they ride out a short etcd outage (a restart,
/// a lost connection) the same way: the session is lost only when the lease really is gone, because etcd
/// says so (it expired or was revoked), or no renewal was confirmed for a whole TTL, after which etcd may
/// have deleted the lock key and handed the lock to someone else.
///
/// Dropping the session stops the renewals but does not end the lease. To give everything up at once,
/// drop it and then `client.lease_revoke(id)`: revoking deletes every key attached to the lease, so a lock
/// still held, or a place still queued for, is released (what Go's `session.Close()` does).
pub struct Session {
    lease_id: i64,
    ttl: i64,
    /// Until when the lease surely lives: the last confirmed renewal + TTL. The renewer moves it on.
    alive_until: Arc<Mutex<Instant>>,
    renewer: JoinHandle<String>,
    /// Why the session is lost, once [`Session::lost`] has seen it.
    lost: Option<String>,
}

impl Session {
    /// Starts keeping lease `lease_id` alive. `ttl` is the TTL etcd *granted* (`LeaseGrantResponse::ttl`,
    /// which may be longer than the one asked for): the lease is renewed every third of it, so that one
    /// late or lost renewal does not let it expire.
    pub async fn start(client: &Client, lease_id: i64, ttl: i64) -> Result<Session> {
        let mut client = client.clone();
        // Opening the stream already renews the lease once, and fails if the lease no longer exists.
        let (keeper, answers) = client
            .lease_keep_alive(lease_id)
            .await
            .with_context(|| format!("start renewing lease {lease_id:016x}"))?;
        let kept = KeptLease::new(lease_id, ttl, keeper, answers);
        let alive_until = Arc::new(Mutex::new(kept.deadline()));
        debug!(
            "session on lease {lease_id:016x} (ttl {ttl}s): renewed every {:?}",
            kept.renew_every()
        );
        let renewer = tokio::spawn(renew(kept, client, Arc::clone(&alive_until)));
        Ok(Session {
            lease_id,
            ttl,
            alive_until,
            renewer,
            lost: None,
        })
    }

    /// The lease ID: it names this session's lock keys, and etcd deletes them with it.
    pub fn lease_id(&self) -> i64 {
        self.lease_id
    }

    /// The TTL etcd granted, in seconds: how long the lock outlives this process if it dies.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Until when the lease surely lives: the last renewal etcd confirmed, plus the TTL.
    pub fn alive_until(&self) -> Instant {
        read(&self.alive_until)
    }

    /// Whether the lease surely still lives right now, without asking etcd. Check it just before an
    /// action that needs the lock: a process that was frozen (SIGSTOP, a VM pause) past its TTL sees
    /// `false` at once on waking up, even before the renewer has run again.
    pub fn is_alive(&self) -> bool {
        self.lost.is_none() && !self.renewer.is_finished() && Instant::now() < self.alive_until()
    }

    /// Resolves only once the session is lost: etcd said the lease is gone (it expired or was revoked),
    /// or no renewal was confirmed for a whole TTL. From then on someone else may hold this session's
    /// lock, so stop the work the lock protects. A short outage that the renewer rides out does not
    /// resolve it. Go's `session.Done()`. Use it in `tokio::select!` next to the work.
    pub async fn lost(&mut self) -> String {
        if let Some(why) = &self.lost {
            return why.clone();
        }
        let alive_until = Arc::clone(&self.alive_until);
        let why = loop {
            let until = read(&alive_until);
            tokio::select! {
                joined = &mut self.renewer => break match joined {
                    Ok(why) => why,
                    Err(e) => format!("the renewal task stopped: {e}"),
                },
                () = tokio::time::sleep_until(until.into()) => {
                    // The renewer may have moved the deadline on meanwhile: then wait for the new one.
                    if Instant::now() >= read(&alive_until) {
                        break format!(
                            "no renewal of lease {:016x} was confirmed within its TTL of {}s, so etcd may \
                             have deleted its keys",
                            self.lease_id, self.ttl
                        );
                    }
                }
            }
        };
        self.renewer.abort();
        self.lost = Some(why.clone());
        why
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// The task of a [`Session`]: renews until the lease is gone, re-opening the stream whenever it breaks,
/// and publishes each new deadline; returns why it stopped.
async fn renew(
    mut kept: KeptLease,
    mut client: Client,
    alive_until: Arc<Mutex<Instant>>,
) -> String {
    let id = kept.id;
    loop {
        match kept.renew_when_due().await {
            Ok(Renewal::Alive { .. }) => {}
            Ok(Renewal::Gone) => {
                return format!(
                    "lease {id:016x} no longer exists on the server (etcd answered a renewal with TTL 0): {}",
                    kept.why_gone()
                )
            }
            Err(broken) => {
                debug!("keep-alive stream of lease {id:016x} broke ({broken:#}); re-opening it");
                if let Err(why) = kept.reopen(&mut client).await {
                    return format!("{why:#}");
                }
                debug!("keep-alive stream of lease {id:016x} re-opened");
            }
        }
        *alive_until.lock().unwrap_or_else(|e| e.into_inner()) = kept.deadline();
    }
}

fn read(at: &Mutex<Instant>) -> Instant {
    *at.lock().unwrap_or_else(|e| e.into_inner())
}

/// A third of `ttl_secs` (at least a third of a second): the renewal period, as Go's client.
fn third_of(ttl_secs: i64) -> Duration {
    Duration::from_secs(ttl_secs.max(1) as u64) / 3
}
