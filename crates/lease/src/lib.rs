//! The client calls behind `cargo run -p lease`, one small function per step, so each can be copied into a
//! service on its own. `main.rs` calls them in order and prints what they return.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{
    Client, EventType, LeaseTimeToLiveOptions, PutOptions, WatchOptions, WatchStream,
};
use etcd_connect::show_bytes;
use log::debug;

/// The longest TTL etcd grants (`MaxLeaseTTL` in etcd's lease package, about 285 years). Larger requests
/// are refused by the server; the command line refuses them first.
pub const MAX_TTL_SECS: i64 = 9_000_000_000;

/// A lease ID as etcdctl prints it (16 hex digits), so it can be pasted into
/// `etcdctl lease timetolive <id> --keys` or `etcdctl lease revoke <id>`.
pub fn lease_id_hex(id: i64) -> String {
    format!("{id:016x}")
}

/// A lease as the server granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// Seconds. Use this, not the TTL you asked for: etcd raises a very short TTL to its minimum
    /// (about 1.5 election timeouts, 2 s with default settings), because a shorter lease could expire
    /// during a normal leader election.
    pub ttl: i64,
}

/// Step 1: ask etcd for a lease. A lease is a countdown that lives on the server; it deletes nothing by
/// itself until keys are attached to it.
pub async fn grant(client: &mut Client, ttl: i64) -> Result<Lease> {
    let resp = client
        .lease_grant(ttl, None)
        .await
        .with_context(|| format!("grant a lease of {ttl}s"))?;
    debug!("grant answered: {resp:?}");
    Ok(Lease {
        id: resp.id(),
        ttl: resp.ttl(),
    })
}

/// Step 2: PUT a key attached to the lease. Returns the store revision of this write.
///
/// Any number of keys can share one lease: when it ends, etcd deletes all of them in one step. That is
/// how a service registers several keys that must disappear together when it dies.
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

/// Step 3: watch one key starting at `revision`.
///
/// Starting at the revision right after our PUT, rather than "now", means nothing can slip through
/// between the PUT and the moment the watch is set up: etcd replays every change since that revision.
pub async fn watch_key_from(client: &mut Client, key: &str, revision: i64) -> Result<WatchStream> {
    let options = WatchOptions::new().with_start_revision(revision);
    client
        .watch(key, Some(options))
        .await
        .with_context(|| format!("watch {key} from revision {revision}"))
}

/// Step 4: wait for the next DELETE of the watched key and return its revision.
///
/// Expiry is an ordinary delete in etcd's history, so a watcher sees it like any other. A PUT that moves
/// the key off `lease_id` (another client overwrote it) is an error: the key would then never expire with
/// this lease and the wait would never end.
///
/// Safe to cancel (as in `tokio::select!`): it only stops at `message().await`, where nothing is lost.
pub async fn next_delete(watch: &mut WatchStream, lease_id: i64) -> Result<i64> {
    loop {
        let Some(resp) = watch.message().await.context("watch stream failed")? else {
            bail!("the watch stream closed before the key was deleted");
        };
        if resp.canceled() {
            bail!("etcd cancelled the watch: {}", resp.cancel_reason());
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Delete => return Ok(kv.mod_revision()),
                EventType::Put if kv.lease() != lease_id => bail!(
                    "another client overwrote {} without lease {}, so it will not expire with it",
                    show_bytes(kv.key()),
                    lease_id_hex(lease_id)
                ),
                EventType::Put => {
                    debug!("{} was rewritten on the same lease", show_bytes(kv.key()))
                }
            }
        }
    }
}

/// What etcd says about a lease that still exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// Whole seconds left; the lease ends in less than `remaining + 1` seconds.
    pub remaining: i64,
    /// The TTL it was granted with (or last renewed to).
    pub granted: i64,
    /// The keys attached to it.
    pub keys: Vec<String>,
}

/// The remaining TTL of a lease and its keys (`etcdctl lease timetolive <id> --keys`).
/// `None` once the lease has expired or was revoked: etcd then answers with a TTL of -1, not an error.
pub async fn time_to_live(client: &mut Client, lease_id: i64) -> Result<Option<LeaseStatus>> {
    let resp = client
        .lease_time_to_live(lease_id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .with_context(|| format!("ask the TTL of lease {}", lease_id_hex(lease_id)))?;
    if resp.ttl() < 0 {
        return Ok(None);
    }
    Ok(Some(LeaseStatus {
        remaining: resp.ttl(),
        granted: resp.granted_ttl(),
        keys: resp.keys().iter().map(|k| show_bytes(k)).collect(),
    }))
}

/// How often the waiting step prints the remaining TTL: a quarter of the TTL, between 1 and 5 seconds,
/// so a short lease shows a few lines and a long one does not flood the terminal.
pub fn report_every(ttl: i64) -> Duration {
    Duration::from_secs((ttl / 4).clamp(1, 5) as u64)
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
