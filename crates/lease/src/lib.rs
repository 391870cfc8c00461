//! The reusable part of the `lease` topic: waiting on a watch until etcd deletes a key that lives on a
//! lease.
//!
//! Every other call of the topic is one `etcd-client` call, and `src/main.rs` makes it where it explains
//! it. This file depends only on `etcd-client`, `anyhow` and `log`, so it can be copied into a service as
//! is (see the topic README, "Use it in your project").

use anyhow::{bail, Result};
use etcd_client::{EventType, WatchStream};
use log::debug;

/// How [`wait_for_delete`] ended, when etcd did not refuse the wait outright.
#[derive(Debug)]
pub enum Watched {
    /// etcd deleted the key, at this store revision.
    Deleted { revision: i64 },
    /// The watch stream broke (connection lost, etcd restarted or stalled) or closed. Nothing is lost:
    /// open a new watch from the revision `wait_for_delete` left in `next_revision`, and wait again.
    Broken(etcd_client::Error),
}

/// Waits on `watch` (a watch of one key put on lease `lease_id`) for the key's next DELETE.
///
/// Use it when something must happen once a leased key is gone: a registration that expired, a lock
/// whose holder died, a demo that wants to show the expiry. Expiry is an ordinary DELETE in etcd's
/// history, so a watcher sees it like any other; so are a revoke and a plain `etcdctl del`. To tell them
/// apart, ask `lease_time_to_live` afterwards: a lease that still exists means someone deleted the key
/// by hand.
///
/// Start the watch at the revision right after your PUT (`WatchOptions::new().with_start_revision(put +
/// 1)`), not "now": etcd then replays every change since the PUT, so a delete that happens before the
/// watch is set up is still seen. Pass that revision as `next_revision`; each event seen moves it on, so
/// that after [`Watched::Broken`] a new watch started at `next_revision` misses nothing and repeats
/// nothing. A broken stream is not a lost lease: the lease lives on the server, whatever our connection
/// does.
///
/// Errors are what waiting again cannot fix. A PUT that moves the key off `lease_id` (another client
/// overwrote it, with another lease or none): the key would then never be deleted with this lease. A
/// watch that etcd cancels (its start revision was compacted away). A PUT on the same lease only changes
/// the value, and the wait goes on.
///
/// Safe to cancel (as in `tokio::select!`): it only waits at `message().await`, where nothing is lost.
pub async fn wait_for_delete(
    watch: &mut WatchStream,
    lease_id: i64,
    next_revision: &mut i64,
) -> Result<Watched> {
    loop {
        let resp = match watch.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                return Ok(Watched::Broken(etcd_client::Error::WatchError(
                    "the watch stream closed".into(),
                )))
            }
            Err(e) => return Ok(Watched::Broken(e)),
        };
        if resp.canceled() {
            bail!("etcd cancelled the watch: {}", resp.cancel_reason());
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            *next_revision = (*next_revision).max(kv.mod_revision() + 1);
            let key = String::from_utf8_lossy(kv.key());
            match event.event_type() {
                EventType::Delete => {
                    return Ok(Watched::Deleted {
                        revision: kv.mod_revision(),
                    })
                }
                EventType::Put if kv.lease() != lease_id => bail!(
                    "another client overwrote {key} without lease {lease_id:016x}, so it will not \
                     expire with it"
                ),
                EventType::Put => debug!("{key} was rewritten on the same lease"),
            }
        }
    }
}
