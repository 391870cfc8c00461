//! The reusable part of the `election` topic: a session (a lease kept alive in the background) to campaign
//! with, and a leader query that tells "nobody leads" from a failure.
//!
//! Every other call of the topic (`lease_grant`, `campaign`, `proclaim`, `leader`, `observe`, `resign`,
//! `lease_revoke`) is one `etcd-client` call, and `src/main.rs` (the demo), `src/candidate.rs` or
//! `src/observer.rs` makes it at the step that explains it. This file depends only on `etcd-client`,
//! `tokio`, `anyhow` and `log`, so it can be copied into a service as is (see the topic README, "Use it in
//! your project").
//!
//! How etcd's election works, in three sentences. Every candidate writes a key `<name>/<its lease id in
//! hex>` attached to its lease, with its value (its address, its ID); the key with the lowest create
//! revision is the leader, and the others' `campaign` calls wait for the keys created before theirs to be
//! deleted. Resigning deletes the key; so does the lease expiring or being revoked, which is how a crashed
//! leader is replaced. These are the keys Go's `concurrency.Election` writes, so Go and Rust candidates can
//! stand in one election.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use etcd_client::{Client, KeyValue, LeaseKeepAliveStream, LeaseKeeper};
use log::debug;
use tokio::task::JoinHandle;

/// First pause before re-trying a call that failed because etcd could not be reached; it doubles after
/// each failure up to [`MAX_PAUSE`], so a process waiting out an etcd restart does not spin.
pub const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Longest pause between two attempts to reach etcd again.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A lease kept alive in the background for as long as this process runs: Go's `concurrency.Session`.
///
/// Use it for every campaign: grant a lease (`client.lease_grant(ttl, None)`), start a session on it, and
/// campaign with `client.campaign(name, value, session.lease_id())`. etcd-client does not renew a lease by
/// itself; without this task the lease, and the leadership with it, would expire after `ttl` seconds
/// although the leader is still working. When the process dies, the renewals stop and etcd deletes its
/// candidate key one TTL later, which elects the next candidate.
///
/// The renewals ride out a short etcd outage (a restart, a lost connection): when the keep-alive stream
/// breaks, the task re-opens it, with growing pauses, for as long as the lease can still be alive, that is
/// until the last confirmed renewal + TTL. The session is lost only when the lease really is gone: etcd
/// says so (it expired or was revoked), or that deadline passed without a confirmed renewal, after which
/// etcd may have deleted the candidate key and elected someone else.
///
/// Dropping the session stops the renewals but does not end the lease. To give everything up at once,
/// drop it and then `client.lease_revoke(id)`: revoking deletes every key attached to the lease, so a leadership
/// still held, or a place still queued for, is given up (what Go's `session.Close()` does).
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
    /// late or lost renewal does not let it expire (Go's client renews at TTL/3 too).
    pub async fn start(client: &Client, lease_id: i64, ttl: i64) -> Result<Session> {
        let mut client = client.clone();
        let sent_at = Instant::now();
        // Opening the stream already renews the lease once, and fails if the lease no longer exists.
        let (keeper, answers) = client
            .lease_keep_alive(lease_id)
            .await
            .with_context(|| format!("start renewing lease {lease_id:016x}"))?;
        let alive_until = Arc::new(Mutex::new(sent_at + secs(ttl)));
        let renewer = Renewer {
            id: lease_id,
            ttl,
            keeper,
            answers,
            alive_until: Arc::clone(&alive_until),
            next_renewal: sent_at + third_of(ttl),
        };
        debug!(
            "session on lease {lease_id:016x} (ttl {ttl}s): renewed every {:?}",
            third_of(ttl)
        );
        Ok(Session {
            lease_id,
            ttl,
            alive_until,
            renewer: tokio::spawn(renewer.run(client)),
            lost: None,
        })
    }

    /// The lease ID: it names this session's candidate keys (`<name>/<lease id in hex>`), and etcd
    /// deletes them with it.
    pub fn lease_id(&self) -> i64 {
        self.lease_id
    }

    /// The TTL etcd granted, in seconds: how long a leadership outlives this process if it dies.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Until when the lease surely lives: the last renewal etcd confirmed, plus the TTL.
    pub fn alive_until(&self) -> Instant {
        read(&self.alive_until)
    }

    /// Whether the lease surely still lives right now, without asking etcd. Check it just before an
    /// action only the leader may take: a process that was frozen (SIGSTOP, a VM pause) past its TTL sees
    /// `false` at once on waking up, even before the renewer has run again.
    pub fn is_alive(&self) -> bool {
        self.lost.is_none() && !self.renewer.is_finished() && Instant::now() < self.alive_until()
    }

    /// Resolves only once the session is lost: etcd said the lease is gone (it expired or was revoked),
    /// or no renewal was confirmed for a whole TTL. From then on another candidate may lead, so stop the
    /// work only the leader may do. A short outage that the renewer rides out does not resolve it. Go's
    /// `session.Done()`. Use it in `tokio::select!` next to the work.
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

/// The background task of a [`Session`]: both ends of the keep-alive stream, and its timing. (The same
/// approach as `KeptLease` in the keepalive topic and `Session` in the lock topic, kept here so that this file can be copied alone.)
struct Renewer {
    id: i64,
    ttl: i64,
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
    alive_until: Arc<Mutex<Instant>>,
    next_renewal: Instant,
}

/// What one renewal found.
enum Renewal {
    Alive,
    /// etcd answered TTL 0: the lease no longer exists, and renewing cannot bring it back.
    Gone,
}

impl Renewer {
    /// Renews until the lease is gone, re-opening the stream whenever it breaks; returns why it stopped.
    async fn run(mut self, mut client: Client) -> String {
        loop {
            match self.renew_when_due().await {
                Ok(Renewal::Alive) => {}
                Ok(Renewal::Gone) => return self.gone("etcd answered a renewal with TTL 0"),
                Err(broken) => {
                    debug!(
                        "keep-alive stream of lease {:016x} broke ({broken:#}); re-opening it",
                        self.id
                    );
                    if let Err(why) = self.reopen(&mut client).await {
                        return why;
                    }
                    debug!("keep-alive stream of lease {:016x} re-opened", self.id);
                }
            }
        }
    }

    /// Why etcd says the lease is gone, as far as timing can tell. etcd renewed the lease no earlier than
    /// our last confirmed renewal was sent, so it cannot expire before `alive_until`: gone before that
    /// means revoked (`etcdctl lease revoke`, another client's `lease_revoke`). After it, etcd's TTL 0
    /// cannot tell which.
    fn gone(&self, how: &str) -> String {
        let why = match read(&self.alive_until).checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => format!(
                "it was revoked, since it still had {left:.1?} of its {}s TTL left by our last renewal",
                self.ttl
            ),
            _ => "it expired or was revoked: its TTL had run out since our last renewal, so etcd's \
                  answer cannot tell which"
                .to_string(),
        };
        format!(
            "lease {:016x} no longer exists on the server ({how}): {why}",
            self.id
        )
    }

    /// Waits until the next renewal is due, sends it, and reads etcd's answer, bounded by the time to the
    /// renewal after it: an answer that late is as good as none. An error means the stream is broken.
    async fn renew_when_due(&mut self) -> Result<Renewal> {
        tokio::time::sleep_until(self.next_renewal.into()).await;
        let every = third_of(self.ttl);
        let sent_at = Instant::now();
        self.next_renewal = sent_at + every;
        self.keeper
            .keep_alive()
            .await
            .context("send a keep-alive request")?;
        let answer = tokio::time::timeout(every, self.answers.message())
            .await
            .map_err(|_| anyhow!("no keep-alive answer within {every:.1?}"))?
            .map_err(|e| anyhow!("keep-alive stream failed: {}", brief(&e)))?
            .ok_or_else(|| anyhow!("etcd closed the keep-alive stream"))?;
        if answer.ttl() <= 0 {
            return Ok(Renewal::Gone);
        }
        debug!("lease {:016x} renewed for {}s", answer.id(), answer.ttl());
        // etcd renewed it after we sent the request, so it lives at least until then + TTL.
        *self.alive_until.lock().unwrap_or_else(|e| e.into_inner()) = sent_at + secs(self.ttl);
        Ok(Renewal::Alive)
    }

    /// Re-opens the stream with `client.lease_keep_alive(id)`, which also renews the lease, with growing
    /// pauses between attempts, until the lease's deadline. Fails at once when etcd says the lease is gone.
    async fn reopen(&mut self, client: &mut Client) -> std::result::Result<(), String> {
        let mut pause = FIRST_PAUSE;
        let mut last_error = String::from("no attempt finished in time");
        loop {
            let deadline = read(&self.alive_until);
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Each attempt is bounded too: against an etcd that accepts connections but never answers, a
            // call would otherwise wait for the whole TTL.
            let attempt_until = deadline.min(now + third_of(self.ttl));
            match tokio::time::timeout_at(attempt_until.into(), client.lease_keep_alive(self.id))
                .await
            {
                Ok(Ok((keeper, answers))) => {
                    self.keeper = keeper;
                    self.answers = answers;
                    *self.alive_until.lock().unwrap_or_else(|e| e.into_inner()) =
                        now + secs(self.ttl);
                    self.next_renewal = now + third_of(self.ttl);
                    return Ok(());
                }
                // etcd answered with TTL 0, which `lease_keep_alive` reports as "lease not found".
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(why))) => {
                    return Err(self.gone(&format!("etcd answered {why:?}")))
                }
                Ok(Err(e)) => {
                    last_error = brief(&e);
                    debug!(
                        "re-opening the keep-alive stream of lease {:016x} failed: {e}",
                        self.id
                    );
                }
                Err(_) => last_error = "etcd did not answer".to_string(),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
        Err(format!(
            "could not renew lease {:016x} within its TTL of {}s ({last_error}), so etcd may have deleted its keys",
            self.id, self.ttl
        ))
    }
}

fn read(at: &Mutex<Instant>) -> Instant {
    *at.lock().unwrap_or_else(|e| e.into_inner())
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

/// The renewal period: a third of `ttl_secs` (at least a third of a second), as Go's client.
///
/// It also sets the longest etcd freeze the session is sure to survive: two thirds of the TTL, less a
/// second, not any freeze shorter than the TTL. When a freeze starts, the last renewal etcd served may be
/// up to one period old, and the lease ends one TTL after it; the renewal sent during the freeze waits in
/// the open connection and is served as soon as etcd runs again, which must be before that TTL is over
/// (the second is for etcd to wake up and serve it). If the HTTP/2 keep-alive pings give up on the
/// connection during the freeze, the renewal waits for a re-opened stream: count up to `MAX_PAUSE` more.
fn third_of(ttl_secs: i64) -> Duration {
    Duration::from_secs(ttl_secs.max(1) as u64) / 3
}

/// An etcd-client error in the words a user can act on. A gRPC status prints as a long dump of code,
/// message, details and metadata; its message and innermost cause (`Connection refused (os error 111)`)
/// say what happened. Full errors stay in the debug log.
pub fn brief(e: &etcd_client::Error) -> String {
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

/// Whether a failed call may succeed if made again: etcd could not be reached or the connection broke
/// (a restart, a network blip, a leader election), as opposed to etcd refusing the request itself (a
/// lease that does not exist, an invalid argument), which retrying cannot fix.
pub fn is_transient(e: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    match e {
        // gRPC status codes: CANCELLED 1, UNKNOWN 2 (a broken HTTP/2 connection), DEADLINE_EXCEEDED 4,
        // ABORTED 10, INTERNAL 13, UNAVAILABLE 14 (etcd unreachable, no leader yet).
        Error::GRpcStatus(status) => matches!(i32::from(status.code()), 1 | 2 | 4 | 10 | 13 | 14),
        Error::TransportError(_) | Error::IoError(_) => true,
        _ => false,
    }
}

/// The message etcd's election service answers `leader` with when no candidate holds the election
/// (Go's `concurrency.ErrElectionNoLeader`).
pub const NO_LEADER: &str = "election: no leader";

/// Who leads election `name` right now: the leader's key-value (its key `<name>/<lease hex>`, its value,
/// and its create revision), or `None` when nobody does.
///
/// Use it instead of a bare `client.leader(name)` wherever "nobody leads" is a normal answer (a status
/// page, a client deciding whom to call). The election service reports an empty election as an error,
/// with gRPC code UNKNOWN, the same code as a broken connection: a retry loop that treats every UNKNOWN as
/// transient would retry it forever, and one that treats it as fatal would die on an empty election.
/// This tells the two apart by etcd's message, and returns every other error unchanged.
pub async fn current_leader(
    client: &mut Client,
    name: &str,
) -> std::result::Result<Option<KeyValue>, etcd_client::Error> {
    match client.leader(name).await {
        Ok(mut resp) => Ok(resp.take_kv()),
        Err(etcd_client::Error::GRpcStatus(status)) if status.message().contains(NO_LEADER) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
