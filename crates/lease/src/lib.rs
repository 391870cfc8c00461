//! The reusable part of the `lease` topic: waiting on a watch until etcd deletes a key that lives on a
//! lease.
//!
//! Every other call of the topic is one `etcd-client` call, and `src/main.rs` makes it where it explains
//! it. This file depends only on `etcd-client`, `anyhow` and `log`, so it can be copied into a service as
//! is (see the topic README, "Use it in your project").

use anyhow::{bail, Context, Result};
use etcd_client::{EventType, WatchStream};
use log::debug;

/// Waits on `watch` (a watch of one key put on lease `lease_id`) for the key's next DELETE, and returns
/// the store revision of that delete.
///
/// Use it when something must happen once a leased key is gone: a registration that expired, a lock
/// whose holder died, a demo that wants to show the expiry. Expiry is an ordinary DELETE in etcd's
/// history, so a watcher sees it like any other; so are a revoke and a plain `etcdctl del`. To tell them
/// apart, ask `lease_time_to_live` afterwards: a lease that still exists means someone deleted the key
/// by hand.
///
/// Start the watch at the revision right after your PUT (`WatchOptions::new().with_start_revision(put +
/// 1)`), not "now": etcd then replays every change since the PUT, so a delete that happens before the
/// watch is set up is still seen.
///
/// A PUT that moves the key off `lease_id` (another client overwrote it, with another lease or none) is
/// an error: the key would then never be deleted with this lease, and the wait would never end. A PUT on
/// the same lease only changes the value, and the wait goes on.
///
/// Safe to cancel (as in `tokio::select!`): it only waits at `message().await`, where nothing is lost.
pub async fn wait_for_delete(watch: &mut WatchStream, lease_id: i64) -> Result<i64> {
    loop {
        let Some(resp) = watch.message().await.context("watch stream failed")? else {
            bail!("the watch stream closed before the key was deleted");
        };
        if resp.canceled() {
            bail!("etcd cancelled the watch: {}", resp.cancel_reason());
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key());
            match event.event_type() {
                EventType::Delete => return Ok(kv.mod_revision()),
                EventType::Put if kv.lease() != lease_id => bail!(
                    "another client overwrote {key} without lease {lease_id:016x}, so it will not \
                     expire with it"
                ),
                EventType::Put => debug!("{key} was rewritten on the same lease"),
            }
        }
    }
}
