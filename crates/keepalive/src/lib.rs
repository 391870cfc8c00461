//! The client calls behind `cargo run -p keepalive`, one small function per step, so each can be copied
//! into a service on its own. `main.rs` calls them in order and prints what they return.
//!
//! The heart of it is [`KeptLease`]: etcd-client hands out the two ends of a keep-alive stream, and the
//! renewing (when to send, what an answer means, what to do when the stream breaks) is up to the caller.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use log::debug;

/// The longest TTL etcd grants (`MaxLeaseTTL` in etcd's lease package, about 285 years).
pub const MAX_TTL_SECS: i64 = 9_000_000_000;

/// Pause between attempts to re-open a broken keep-alive stream.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A lease ID as etcdctl prints it (16 hex digits), so it can be pasted into `etcdctl lease ...`.
pub fn lease_id_hex(id: i64) -> String {
    format!("{id:016x}")
}

/// Step 1: ask etcd for a lease. Returns its ID and the TTL the server chose, which can be longer than
/// the one asked for (etcd raises very short TTLs to about 1.5 election timeouts, 2 s by default).
pub async fn grant(client: &mut Client, ttl: i64) -> Result<(i64, i64)> {
    let resp = client
        .lease_grant(ttl, None)
        .await
        .with_context(|| format!("grant a lease of {ttl}s"))?;
    Ok((resp.id(), resp.ttl()))
}

/// Step 2: PUT a key attached to the lease. Returns the store revision of this write.
pub async fn put_with_lease(
    client: &mut Client,
    key: &str,
    value: &str,
    lease_id: i64,
) -> Result<i64> {
    let resp = client
        .put(key, value, Some(PutOptions::new().with_lease(lease_id)))
        .await
        .with_context(|| format!("put {key} on lease {}", lease_id_hex(lease_id)))?;
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// How often to renew: a third of the TTL, so one lost or late renewal still leaves time for another
/// before the lease runs out. (Go's client renews at TTL/3 too.)
pub fn renew_every(ttl_secs: i64) -> Duration {
    Duration::from_secs(ttl_secs.max(1) as u64) / 3
}

/// What etcd answered to one renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease is renewed: it now has `ttl` seconds again.
    Alive { ttl: i64 },
    /// etcd answered with TTL 0: the lease no longer exists (it expired, or someone revoked it), and the
    /// keys that were attached to it are deleted. Renewing cannot bring it back.
    Gone,
}

/// A lease this program keeps alive, with both ends of its keep-alive stream.
///
/// Go's `KeepAlive` starts a goroutine that renews on its own. etcd-client does not: `keep_alive(id)`
/// returns a [`LeaseKeeper`] (the sending end: each `keep_alive()` call sends one renewal) and a
/// [`LeaseKeepAliveStream`] (the receiving end: one answer per renewal). Nothing is sent unless we send
/// it, so this struct does the timing, and re-opens the stream when the connection breaks.
///
/// Dropping it stops the renewals but does not end the lease: etcd deletes the keys only when the TTL
/// runs out. Call `revoke` to end it now.
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
    /// Step 3: open the keep-alive stream for a lease with the given `ttl`.
    ///
    /// Note that etcd-client's `keep_alive()` already sends one renewal and reads its answer before it
    /// returns, so a lease that no longer exists fails here, and the lease was renewed just now.
    pub async fn start(client: &mut Client, id: i64, ttl: i64) -> Result<KeptLease> {
        let sent_at = Instant::now();
        let (keeper, answers) = client
            .lease_keep_alive(id)
            .await
            .with_context(|| format!("open a keep-alive stream for lease {}", lease_id_hex(id)))?;
        Ok(KeptLease {
            id,
            ttl,
            keeper,
            answers,
            renewed_at: sent_at,
            next_renewal: sent_at + renew_every(ttl),
        })
    }

    /// The moment the lease ends unless a renewal reaches etcd first.
    pub fn deadline(&self) -> Instant {
        self.renewed_at + Duration::from_secs(self.ttl as u64)
    }

    /// Step 4, once: wait until the next renewal is due, send it, and read etcd's answer.
    ///
    /// An error means the stream is broken (connection lost, no answer in time): call [`Self::reopen`].
    /// Cancelling this (as `tokio::select!` does) is fine when you stop using the lease afterwards; an
    /// answer already on its way would otherwise be read by the next call.
    pub async fn renew_when_due(&mut self) -> Result<Renewal> {
        tokio::time::sleep_until(self.next_renewal.into()).await;
        let every = renew_every(self.ttl);
        let sent_at = Instant::now();
        self.next_renewal = sent_at + every;

        self.keeper
            .keep_alive()
            .await
            .context("send a keep-alive request")?;
        // An answer later than the next renewal is as good as none: treat the stream as broken.
        let answer = tokio::time::timeout(every, self.answers.message())
            .await
            .map_err(|_| anyhow!("no keep-alive answer within {every:.1?}"))?
            .context("keep-alive stream failed")?
            .ok_or_else(|| anyhow!("etcd closed the keep-alive stream"))?;
        debug!("keep-alive answer: {answer:?}");

        if answer.ttl() <= 0 {
            return Ok(Renewal::Gone);
        }
        self.renewed_at = sent_at;
        Ok(Renewal::Alive { ttl: answer.ttl() })
    }

    /// Re-opens a broken keep-alive stream, trying again until the lease's deadline. Past the deadline
    /// etcd has ended the lease (or is about to), so this fails rather than pretend the key still exists.
    pub async fn reopen(&mut self, client: &mut Client) -> Result<()> {
        let id = lease_id_hex(self.id);
        let deadline = self.deadline();
        let mut last_error = String::from("no attempt finished in time");
        while Instant::now() < deadline {
            let sent_at = Instant::now();
            match tokio::time::timeout_at(deadline.into(), client.lease_keep_alive(self.id)).await {
                Ok(Ok((keeper, answers))) => {
                    self.keeper = keeper;
                    self.answers = answers;
                    self.renewed_at = sent_at;
                    self.next_renewal = sent_at + renew_every(self.ttl);
                    return Ok(());
                }
                // etcd answered, with TTL 0: `keep_alive()` reports that as this error ("lease not found").
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(why))) => {
                    bail!("lease {id} is gone ({why}): it expired or was revoked, and its keys with it")
                }
                Ok(Err(e)) => {
                    last_error = etcd_connect::short_error(&e);
                    debug!("re-opening the keep-alive stream for lease {id} failed: {e}");
                }
                Err(_) => break,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(RETRY_PAUSE.min(left)).await;
        }
        bail!(
            "could not renew lease {id} within its TTL of {}s, so etcd deletes its keys as soon as it \
             sees the TTL run out (last error: {last_error})",
            self.ttl
        )
    }
}

/// Revokes the lease: etcd ends it now and deletes every key attached to it in the same step.
///
/// Bounded by `limit` so that Ctrl-C never hangs on an etcd that stopped answering; the lease then
/// still ends by itself when its TTL runs out.
pub async fn revoke(client: &mut Client, lease_id: i64, limit: Duration) -> Result<()> {
    let id = lease_id_hex(lease_id);
    match tokio::time::timeout(limit, client.lease_revoke(lease_id)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e).with_context(|| format!("revoke lease {id}")),
        Err(_) => bail!(
            "revoke lease {id}: no answer within {limit:?}; its keys go when its TTL runs out"
        ),
    }
}
