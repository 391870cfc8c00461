//! # lease: a key with a time limit
//!
//! The article's LEASE program: grant a lease of 20 seconds, PUT a key attached to it, and exit,
//! claiming the key "will be gone in 20 seconds". This program then stays and shows it happen: it watches
//! the key, prints the lease's remaining TTL every few seconds, and says when etcd deletes the key.
//!
//! A lease is a countdown kept by the etcd server. Keys attached to it live exactly as long as it does:
//! when the TTL runs out (or the lease is revoked) etcd deletes all of them in one step, and watchers see
//! an ordinary DELETE. One lease can carry many keys, and a client can renew it (`cargo run -p keepalive`).
//!
//! **Not Redis SETNX.** The article compares a lease to `SETNX`, but they do different things. A lease is
//! an expiry time shared by keys, the counterpart of Redis `EXPIRE`/`SET ... EX`, and it never stops
//! another client from writing the key. `SETNX` means "put only if absent"; in etcd that is a transaction
//! whose condition is `create_revision(key) == 0` (the key does not exist yet). Until this project has a
//! `txn` topic, read `try_acquire` in `crates/lock/src/lib.rs`, which is exactly such a transaction.
//! A lock needs both: put-if-absent to take it, and a lease so it frees itself when its owner dies.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p lease                       # 20 s lease, watch `name` until etcd deletes it
//! cargo run -p lease -- --ttl 5 --key /svc/a --value up
//! cargo run -p lease -- --no-wait          # exit right after the put, like the article's program
//! etcdctl get name                         # while it runs: the key is there...
//! etcdctl lease timetolive <id> --keys     # ...on a lease counting down (<id> as printed)
//! ```
//!
//! Press Ctrl-C while it waits: it revokes the lease and the key disappears at once instead of at the end.
//!
//! Try next: `cargo run -p watch` in another terminal, to see the PUT and then the DELETE go by;
//! `etcdctl lease revoke <id>` while it waits, which it reports as a revoke, not an expiry; then
//! `cargo run -p keepalive`, which renews a lease so its key stays while the program lives.

mod cli;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use etcd_client::{LeaseTimeToLiveOptions, PutOptions, WatchOptions};

// One lease, one watch, one timer, handled in turn by a `select!`: the single-threaded runtime is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    etcd_connect::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    let (key, value, dial_timeout) = (&args.key, &args.value, args.connect.dial_timeout);
    // Catch Ctrl-C and SIGTERM from the start, so a signal during setup still leads to a revoke below.
    let mut shutdown = etcd_connect::Shutdown::listen()?;

    // 0. Connect: `Client::connect` plus a `status()` probe, because `Client::connect` alone is lazy
    //    (see the `kv` topic and crates/etcd-connect/src/lib.rs).
    let mut client = etcd_connect::connect(&args.connect).await?;
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // 1. Grant a lease, as in the article. Nothing is deleted yet: a lease is only a countdown kept by
    //    the server. Use the TTL in the reply, not the one asked for: etcd raises a very short TTL to its
    //    minimum (about 1.5 election timeouts, 2 s with default settings), because a shorter lease could
    //    expire during a normal leader election. The clock starts before asking, so that an expiry can
    //    never seem to come early (step 4 relies on that).
    let asked_at = Instant::now();
    let granted = client
        .lease_grant(args.ttl, None)
        .await
        .with_context(|| format!("grant a lease of {}s", args.ttl))?;
    log::debug!("grant answered: {granted:?}");
    let (lease_id, ttl) = (granted.id(), granted.ttl());
    // etcdctl prints lease IDs as 16 hex digits: the same form can be pasted into `etcdctl lease ...`.
    let id = format!("{lease_id:016x}");
    println!("1. granted lease {id} with a TTL of {ttl}s");

    // 2. PUT the key attached to the lease. From now on it lives exactly as long as the lease; any number
    //    of keys can share one lease and go together. (The article writes "/name"; our default key is
    //    `name`, the key `cargo run -p watch` watches, so a watch in another terminal sees this write.)
    let put = client
        .put(
            key.as_str(),
            value.as_str(),
            Some(PutOptions::new().with_lease(lease_id)),
        )
        .await
        .with_context(|| format!("put {key} on lease {id}"))?;
    let revision = put.header().map_or(0, |h| h.revision());
    println!(
        "2. put {key} = {value} on lease {id} (revision {revision}); etcd deletes it when the lease ends"
    );
    if args.no_wait {
        println!(
            "not waiting (--no-wait): {key} disappears in about {ttl}s; see `etcdctl lease timetolive {id} --keys`"
        );
        return Ok(());
    }

    println!("-- beyond the article --");

    // 3. Watch the key from the revision right after our PUT, not from "now": etcd replays every change
    //    since then, so even a deletion that happens before the watch is set up is seen.
    let mut watch = client
        .watch(
            key.as_str(),
            Some(WatchOptions::new().with_start_revision(revision + 1)),
        )
        .await
        .with_context(|| format!("watch {key} from revision {}", revision + 1))?;
    println!(
        "3. watching {key} from revision {}; Ctrl-C revokes the lease instead of waiting",
        revision + 1
    );

    // 4. Wait for etcd to delete the key (`lease::wait_for_delete` in src/lib.rs reads the watch),
    //    showing the countdown meanwhile. The first tick of the interval is immediate.
    let mut countdown = tokio::time::interval(countdown_every(ttl));
    let failed = loop {
        tokio::select! {
            deleted = lease::wait_for_delete(&mut watch, lease_id) => {
                let revision = match deleted {
                    Ok(revision) => revision,
                    Err(e) => break e,
                };
                // A DELETE alone does not say why. Ask about the lease: if it still exists, someone
                // deleted the key by hand (`etcdctl del`), and the lease lives on without it.
                let status = client
                    .lease_time_to_live(lease_id, None)
                    .await
                    .with_context(|| format!("ask about lease {id} after {key} was deleted"))?;
                if status.ttl() >= 0 {
                    break anyhow!(
                        "{key} was deleted by another client at revision {revision}, with {}s left on lease {id}",
                        status.ttl()
                    );
                }
                // The lease is gone too: it expired, or someone revoked it (`etcdctl lease revoke`).
                // etcd started the countdown after `asked_at`, so it cannot expire before
                // `asked_at + ttl`: a lease gone earlier was revoked. (A revoke seen only after that
                // instant, through a slow watch, reads as an expiry: the one case this cannot tell.)
                let after = asked_at.elapsed();
                if after < Duration::from_secs(ttl as u64) {
                    println!(
                        "4. lease {id} was revoked after {after:.1?}, before its TTL of {ttl}s ran out \
                         (`etcdctl lease revoke` does that): etcd deleted {key} with it at revision {revision}"
                    );
                } else {
                    println!(
                        "4. {key} expired after {after:.1?}: etcd deleted it with lease {id} at revision {revision}"
                    );
                }
                return Ok(());
            }
            _ = countdown.tick() => {
                // `etcdctl lease timetolive <id> --keys`: the whole seconds left, and the keys attached.
                let status = client
                    .lease_time_to_live(lease_id, Some(LeaseTimeToLiveOptions::new().with_keys()))
                    .await
                    .with_context(|| format!("ask the TTL of lease {id}"))?;
                if status.ttl() < 0 {
                    // etcd answers TTL -1, not an error, for a lease that is gone. Here it just ended,
                    // and its delete event is on its way through the watch.
                    log::debug!("lease {id} is gone; waiting for the delete event");
                    continue;
                }
                let keys: Vec<_> = status.keys().iter().map(|k| String::from_utf8_lossy(k)).collect();
                println!(
                    "   lease {id}: {}s left of {}s, keys: {}",
                    status.ttl(),
                    status.granted_ttl(),
                    keys.join(", ")
                );
            }
            signal = shutdown.recv() => {
                // Revoking ends the lease now and deletes its keys before it answers; without it the key
                // would linger until the TTL runs out. Bounded by the dial timeout, so Ctrl-C never hangs
                // on an etcd that stopped answering (the key then goes when the TTL runs out).
                tokio::time::timeout(dial_timeout, client.lease_revoke(lease_id))
                    .await
                    .map_err(|_| {
                        anyhow!("revoke lease {id}: no answer within {dial_timeout:?}; {key} goes when its TTL runs out")
                    })?
                    .with_context(|| format!("revoke lease {id}"))?;
                println!("{signal}: revoked lease {id}, so etcd deleted {key} at once");
                return Ok(());
            }
        }
    };

    // The wait cannot end well any more: revoke the lease rather than leave it ticking for nothing. This
    // is on the way to an error exit, so its own failure is only logged, and bounded like the one above.
    match tokio::time::timeout(dial_timeout, client.lease_revoke(lease_id)).await {
        Ok(Ok(_)) => Err(anyhow!("{failed:#}; lease {id} is now revoked")),
        not_revoked => {
            log::debug!("revoking lease {id} after a failure did not work: {not_revoked:?}");
            Err(failed)
        }
    }
}

/// How often step 4 prints the remaining TTL: a quarter of the TTL, between 1 and 5 seconds, so a short
/// lease shows a few lines and a long one does not flood the terminal.
fn countdown_every(ttl: i64) -> Duration {
    Duration::from_secs((ttl / 4).clamp(1, 5) as u64)
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
