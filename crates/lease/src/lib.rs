//! The reusable part of the `lease` topic: reading what a watch of a key put on a lease says, until etcd
//! deletes the key.
//!
//! Every other call of the topic is one `etcd-client` call, and `src/main.rs` makes it where it explains
//! it; the watch itself is `recipes::resuming_watch::ResumingWatch`, which reopens a broken stream from the
//! right revision. This file depends only on `etcd-client`, `anyhow` and `log`, so it can be copied into a
//! service as is (see the topic README, "Use it in your project").

use anyhow::{bail, Result};
use etcd_client::{Event, EventType, GetResponse};
use log::debug;

/// The revision at which these watch events delete the key put on lease `lease_id`, if they do.
///
/// Use it on each batch of events of a watch on one leased key, when something must happen once the key
/// is gone: a registration that expired, a lock whose holder died, a demo that wants to show the expiry.
/// Expiry is an ordinary DELETE in etcd's history, so a watcher sees it like any other; so are a revoke
/// and a plain `etcdctl del`. To tell them apart, ask `lease_time_to_live` afterwards: a lease that still
/// exists means someone deleted the key by hand.
///
/// Start the watch at the revision right after your PUT, not "now": etcd then replays every change since
/// the PUT, so a delete that happens before the watch is set up is still seen.
///
/// An error is what waiting longer cannot fix: a PUT that moves the key off `lease_id` (another client
/// overwrote it, with another lease or none), after which the key would never be deleted with this lease.
/// A PUT on the same lease only changes the value, and the wait goes on (`Ok(None)`).
pub fn deleted_in(events: &[Event], lease_id: i64) -> Result<Option<i64>> {
    for event in events {
        let Some(kv) = event.kv() else { continue };
        let key = String::from_utf8_lossy(kv.key());
        match event.event_type() {
            EventType::Delete => return Ok(Some(kv.mod_revision())),
            EventType::Put if kv.lease() != lease_id => bail!("{}", overwritten(&key, lease_id)),
            EventType::Put => debug!("{key} was rewritten on the same lease"),
        }
    }
    Ok(None)
}

/// [`deleted_in`] for a read of the key instead of its events (what a watch gives after etcd compacted
/// the history it needed): `Some(revision of the read)` when the key is gone by then.
pub fn deleted_by(state: &GetResponse, lease_id: i64) -> Result<Option<i64>> {
    match state.kvs().first() {
        None => Ok(Some(state.header().map_or(0, |h| h.revision()))),
        Some(kv) if kv.lease() != lease_id => {
            bail!(
                "{}",
                overwritten(&String::from_utf8_lossy(kv.key()), lease_id)
            )
        }
        Some(_) => Ok(None),
    }
}

fn overwritten(key: &str, lease_id: i64) -> String {
    format!(
        "another client overwrote {key} without lease {lease_id:016x}, so it will not expire with it"
    )
}
