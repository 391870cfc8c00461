//! The steps beyond the article, each a short function that `main.rs` calls where it needs it: the
//! countdown beside the wait, why the key went, and the revoke on the way out.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use etcd_client::{Client, LeaseGrantResponse, LeaseTimeToLiveOptions};
use recipes::errors::one_line;
use recipes::shutdown::ExitBudget;

/// The lease this program holds, and what the steps need to talk about it.
pub struct Lease {
    pub id: i64,
    /// The TTL etcd granted, in seconds.
    pub ttl: i64,
    /// When the grant was asked for: etcd's countdown started after this instant.
    pub asked_at: Instant,
    /// The key put on it (--key).
    pub key: String,
    /// --dial-timeout: the bound of each call made while waiting, and of all those made while exiting.
    pub limit: Duration,
}

impl Lease {
    pub fn new(
        granted: &LeaseGrantResponse,
        asked_at: Instant,
        key: &str,
        limit: Duration,
    ) -> Lease {
        let (id, ttl, key) = (granted.id(), granted.ttl(), key.to_string());
        Lease {
            id,
            ttl,
            asked_at,
            key,
            limit,
        }
    }

    /// The ID as etcdctl prints it (16 hex digits), to paste into `etcdctl lease timetolive <id>`.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.id)
    }
}

/// Told of each failed attempt to open the watch (etcd stalls or restarts); the next one waits `pause`,
/// longer each time. Said once per outage; the attempts after the first are logged at debug level.
pub fn retrying(attempt: u32, e: &anyhow::Error, pause: Duration) {
    match attempt {
        1 => println!(
            "   the watch could not be opened ({}); trying again until etcd answers",
            one_line(e)
        ),
        _ => log::debug!("watch attempt {attempt} failed: {e:#}; next in {pause:?}"),
    }
}

/// Beside step 4: the TTL left, every few seconds, as `etcdctl lease timetolive <id> --keys` shows it.
/// Each question gets one tick at most, since the lease lives on the server whatever our connection
/// does: a stalled etcd is said once, and so is its return. Runs until it is dropped.
pub async fn countdown(mut client: Client, lease: &Lease) -> Infallible {
    let (id, every, mut silent) = (lease.hex(), countdown_every(lease.ttl), false);
    let mut ticks = tokio::time::interval(every); // the first tick is at once
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        // Go: cli.TimeToLive(ctx, resp.ID, clientv3.WithAttachedKeys())
        let asking =
            client.lease_time_to_live(lease.id, Some(LeaseTimeToLiveOptions::new().with_keys()));
        let Ok(Ok(status)) = tokio::time::timeout(every.min(lease.limit), asking).await else {
            if !std::mem::replace(&mut silent, true) {
                println!("   lease {id}: etcd does not answer; waiting for it (the lease lives on the server)");
            }
            continue;
        };
        if std::mem::take(&mut silent) {
            println!("   lease {id}: etcd answers again");
        }
        // TTL -1 is a lease that just ended: its DELETE is on its way through the watch.
        if status.ttl() >= 0 {
            let keys: Vec<_> = status
                .keys()
                .iter()
                .map(|k| String::from_utf8_lossy(k))
                .collect();
            let (left, granted) = (status.ttl(), status.granted_ttl());
            println!(
                "   lease {id}: {left}s left of {granted}s, keys: {}",
                keys.join(", ")
            );
        }
    }
}

/// How often the countdown prints: a quarter of the TTL, between 1 and 5 seconds, so a short lease shows
/// a few lines and a long one does not flood the terminal.
fn countdown_every(ttl: i64) -> Duration {
    Duration::from_secs((ttl / 4).clamp(1, 5) as u64)
}

/// The end of step 4: etcd deleted the key `at` ("at revision 12"), but a DELETE does not say why. A lease
/// that still exists: someone deleted the key by hand. A lease gone before `asked_at + ttl`, too early to
/// expire: someone revoked it (`etcdctl lease revoke`). Otherwise it expired. (A revoke seen only after
/// that instant, through a slow watch, reads as an expiry: the one case this cannot tell.)
pub async fn explain_delete(mut client: Client, lease: &Lease, at: &str) -> Result<()> {
    let (key, id, ttl) = (&lease.key, lease.hex(), lease.ttl);
    let asking = format!("etcd deleted {key} {at}, but asking why failed");
    // Go: cli.TimeToLive(ctx, resp.ID)
    let status = client.lease_time_to_live(lease.id, None);
    let left = ExitBudget::new(lease.limit)
        .call(asking, status)
        .await?
        .ttl();
    if left >= 0 {
        bail!("{key} was deleted by another client {at}, with {left}s left on lease {id}");
    }
    let after = lease.asked_at.elapsed();
    if after < Duration::from_secs(ttl as u64) {
        println!(
            "4. lease {id} was revoked after {after:.1?}, before its TTL of {ttl}s ran out \
             (`etcdctl lease revoke` does that): etcd deleted {key} with it {at}"
        );
    } else {
        println!("4. {key} expired after {after:.1?}: etcd deleted it with lease {id} {at}");
    }
    Ok(())
}

/// 5. Revoke the lease, on Ctrl-C or SIGTERM or after a failed wait: it ends now, and etcd deletes its keys
///    before it answers; without it the key would stay until the TTL runs out. The key is read first, to
///    say what the revoke really did: an overwrite took it off the lease, and then the revoke leaves it.
///    Both calls share one `ExitBudget` of --dial-timeout, so stopping never hangs on a silent etcd.
///    Returns what happened, in words.
pub async fn revoke(mut client: Client, lease: &Lease) -> Result<String> {
    let (key, id, mut budget) = (&lease.key, lease.hex(), ExitBudget::new(lease.limit));
    let before = budget
        .call(format!("read {key}"), client.get(key.as_str(), None))
        .await;
    // Go: cli.Revoke(ctx, resp.ID)
    let revoked = budget
        .call(format!("revoke lease {id}"), client.lease_revoke(lease.id))
        .await;
    match revoked {
        // etcd answered, and refused: its reason says why.
        Err(e) if e.downcast_ref::<etcd_client::Error>().is_some() => return Err(e),
        Err(_) => bail!(
            "etcd did not answer within {:?}, so lease {id} may not be revoked; {key} goes when its TTL \
             of {}s runs out, since nobody renews it",
            lease.limit,
            lease.ttl
        ),
        Ok(_) => {}
    }
    // The lease the key was on just before: Some(0) for none, None for a key that was gone.
    Ok(match before.map(|got| got.kvs().first().map(|kv| kv.lease())) {
        Ok(Some(on)) if on == lease.id => format!("revoked lease {id}, so etcd deleted {key} at once"),
        Ok(Some(_)) => format!(
            "revoked lease {id}; {key} was overwritten by another client and is no longer on it, so it stays"
        ),
        Ok(None) => format!("revoked lease {id}; {key} was already gone, so it deleted nothing"),
        Err(e) => {
            log::debug!("reading {key} before the revoke failed: {e:#}");
            format!("revoked lease {id}, so etcd deleted {key} if it was still on it")
        }
    })
}

/// Why this program refuses a key that exists, and what to do: one line.
pub fn taken(key: &str) -> String {
    format!(
        "{key} already exists and this program did not create it: on a lease, etcd would delete it when \
         the lease ends; choose another key with --key, or remove it first with `etcdctl del {key}`"
    )
}

#[cfg(test)]
mod tests {
    use super::countdown_every;
    use std::time::Duration;

    #[test]
    fn the_countdown_is_printed_between_every_second_and_every_five() {
        assert_eq!(countdown_every(2), Duration::from_secs(1));
        assert_eq!(countdown_every(12), Duration::from_secs(3));
        assert_eq!(countdown_every(3600), Duration::from_secs(5));
    }
}
