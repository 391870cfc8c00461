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
//! whose condition is `create_revision(key) == 0` (the key does not exist yet): `cargo run -p txn` shows
//! it, and `put_if_absent` in `crates/txn/src/lib.rs` is that transaction, ready to copy.
//! A lock needs both: put-if-absent to take it, and a lease so it frees itself when its owner dies.
//! This program needs both too: it puts its key on the lease only if the key does not exist yet,
//! because etcd would delete an existing key, someone else's, with the lease.
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

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use etcd_client::{
    Client, Compare, CompareOp, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use lease::Watched;
use tokio::time::MissedTickBehavior;

/// First pause before re-opening a broken watch; it doubles after each failed attempt, up to
/// [`MAX_PAUSE`], so a down etcd is asked a few times a second at first and then every few seconds.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(4);

// One lease, one watch, one timer, handled in turn by a `select!`: the single-threaded runtime is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    let (key, value, dial_timeout) = (&args.key, &args.value, args.connect.dial_timeout);
    // Catch Ctrl-C and SIGTERM from the start, so a signal during setup still leads to a revoke below.
    let mut shutdown = recipes::shutdown::Shutdown::listen()?;

    // 0. Connect: `Client::connect` plus a `status()` probe, because `Client::connect` alone is lazy
    //    (see the `kv` topic and crates/etcd-connect/src/lib.rs). An etcd that accepts connections but
    //    does not answer keeps this waiting up to --dial-timeout, so Ctrl-C is listened to meanwhile:
    //    nothing exists in etcd yet, so there is nothing to clean up.
    let mut client = tokio::select! {
        client = etcd_connect::connect(&args.connect) => client?,
        signal = shutdown.recv() => {
            println!("{signal} while connecting: stopped; nothing was created in etcd");
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // Before anything is written: the key must not exist yet. etcd deletes the keys on a lease when the
    // lease ends (it runs out, or Ctrl-C revokes it), so putting someone's existing key on our lease
    // would take it over, and then delete it. Refuse before granting anything, and say what to do.
    let existing = client
        .get(key.as_str(), None)
        .await
        .with_context(|| format!("check that {key} does not exist yet"))?;
    if !existing.kvs().is_empty() {
        bail!("{}", taken(key));
    }

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
    //    The article's plain PUT would take over a key that another client created since the check
    //    above, so this is put-if-absent: one transaction that writes only if the key's create revision
    //    is 0, which means it does not exist (Redis `SET key value NX EX ttl`). If it writes nothing, the
    //    lease holds nothing of ours: revoke it rather than leave it ticking.
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            value.as_str(),
            Some(PutOptions::new().with_lease(lease_id)),
        )]);
    let put = match client.txn(txn).await {
        Ok(put) if put.succeeded() => put,
        not_put => {
            let revoked = tokio::time::timeout(dial_timeout, client.lease_revoke(lease_id)).await;
            log::debug!("revoking lease {id}, as nothing was put on it: {revoked:?}");
            return Err(match not_put {
                Ok(_) => anyhow!("{}", taken(key)),
                Err(e) => anyhow!(e).context(format!("put {key} on lease {id}")),
            });
        }
    };
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
    //    since then, so even a deletion that happens before the watch is set up is seen. Bounded by the
    //    dial timeout: if etcd stalls here, step 4 opens the watch again later, from the same revision.
    let watch = match tokio::time::timeout(dial_timeout, open_watch(&mut client, key, revision + 1))
        .await
    {
        Ok(watch) => {
            Some(watch.with_context(|| format!("watch {key} from revision {}", revision + 1))?)
        }
        Err(_) => None,
    };
    let from = revision + 1;
    match watch {
        Some(_) => println!("3. watching {key} from revision {from}; Ctrl-C revokes the lease instead of waiting"),
        None => println!(
            "3. etcd did not answer the watch within {dial_timeout:?}; trying again from revision {from}; \
             Ctrl-C revokes the lease instead of waiting"
        ),
    }

    // 4. Wait for etcd to delete the key, showing the countdown meanwhile (see `wait` below). A signal
    //    ends the wait wherever it is, even in the middle of a call to a stalled etcd.
    let lease = Lease {
        id: lease_id,
        ttl,
        asked_at,
    };
    let mut waiter = client.clone();
    let failed = tokio::select! {
        waited = wait(&mut waiter, &args, &lease, watch, revision + 1) => match waited {
            Ok(()) => return Ok(()),
            Err(e) => e,
        },
        signal = shutdown.recv() => {
            let done = revoke(&mut client, &args, &lease).await;
            return done.map(|what| println!("{signal}: {what}")).map_err(|e| anyhow!("{signal}: {e}"));
        }
    };

    // The wait cannot end well any more: revoke the lease rather than leave it ticking for nothing. This
    // is on the way to an error exit, so its own failure is only added to the message.
    match revoke(&mut client, &args, &lease).await {
        Ok(what) => bail!("{failed:#}; {what}"),
        Err(e) => bail!("{failed:#}; {e}"),
    }
}

/// What step 4 and 5 need to know about the lease.
struct Lease {
    id: i64,
    /// The TTL etcd granted, in seconds.
    ttl: i64,
    /// When the grant was asked for: etcd's countdown started after this.
    asked_at: Instant,
}

async fn open_watch(
    client: &mut Client,
    key: &str,
    from: i64,
) -> Result<WatchStream, etcd_client::Error> {
    client
        .watch_client()
        .max_decoding_message_size(recipes::resuming_watch::MAX_RESPONSE)
        .watch(key, Some(WatchOptions::new().with_start_revision(from)))
        .await
}

// 4. Wait for etcd to delete the key (`lease::wait_for_delete` in src/lib.rs reads the watch), showing
//    the countdown meanwhile. etcd may stall or restart during the wait; the lease lives on the server
//    all the same, so a broken watch or an unanswered question is no reason to give up:
//    - each `lease_time_to_live` of the countdown is bounded; without an answer it skips that tick;
//    - a broken watch is opened again from the revision after the last event seen, so no event is
//      missed, with a growing pause between attempts (capped at 4 s) while etcd does not answer.
async fn wait(
    client: &mut Client,
    args: &cli::Args,
    lease: &Lease,
    mut watch: Option<WatchStream>,
    mut next_revision: i64,
) -> Result<()> {
    let (key, dial_timeout, ttl) = (&args.key, args.connect.dial_timeout, lease.ttl);
    let id = format!("{:016x}", lease.id);
    let every = countdown_every(ttl);
    // The first tick is immediate; after a long stall, skip the ticks that were missed.
    let mut countdown = tokio::time::interval(every);
    countdown.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut pause = FIRST_PAUSE;
    let mut silent = false;
    loop {
        let Some(stream) = watch.as_mut() else {
            // (Re-)open the watch, bounded like every call, then pause a little longer each time.
            match tokio::time::timeout(dial_timeout, open_watch(client, key, next_revision)).await {
                Ok(Ok(stream)) => {
                    println!("   watching {key} again from revision {next_revision}");
                    watch = Some(stream);
                    pause = FIRST_PAUSE;
                }
                Ok(Err(e)) => log::debug!("re-opening the watch failed: {e}"),
                Err(_) => log::debug!("re-opening the watch: no answer within {dial_timeout:?}"),
            }
            if watch.is_none() {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            continue;
        };
        tokio::select! {
            watched = lease::wait_for_delete(stream, lease.id, &mut next_revision) => {
                let revision = match watched? {
                    Watched::Deleted { revision } => revision,
                    Watched::Broken(e) => {
                        log::debug!("the watch broke: {e}");
                        println!("   the watch of {key} broke; opening it again from revision {next_revision}");
                        watch = None;
                        continue;
                    }
                };
                return explain_delete(client, args, lease, revision).await;
            }
            _ = countdown.tick() => {
                // `etcdctl lease timetolive <id> --keys`: the whole seconds left, and the keys attached.
                // Bounded by the tick, so a stalled etcd delays the next line by one tick at most.
                let asked = tokio::time::timeout(
                    every.min(dial_timeout),
                    client.lease_time_to_live(lease.id, Some(LeaseTimeToLiveOptions::new().with_keys())),
                )
                .await;
                let status = match asked {
                    Ok(Ok(status)) => status,
                    not_answered => {
                        log::debug!("asking the TTL of lease {id}: {not_answered:?}");
                        if !silent {
                            println!(
                                "   lease {id}: etcd does not answer; waiting for it (the lease lives on the server)"
                            );
                        }
                        silent = true;
                        continue;
                    }
                };
                if std::mem::take(&mut silent) {
                    println!("   lease {id}: etcd answers again");
                }
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
        }
    }
}

/// The end of step 4: etcd deleted the key at `revision`. Says why.
async fn explain_delete(
    client: &mut Client,
    args: &cli::Args,
    lease: &Lease,
    revision: i64,
) -> Result<()> {
    let (key, ttl) = (&args.key, lease.ttl);
    let id = format!("{:016x}", lease.id);
    // A DELETE alone does not say why. Ask about the lease: if it still exists, someone deleted the key
    // by hand (`etcdctl del`), and the lease lives on without it.
    let status = tokio::time::timeout(
        args.connect.dial_timeout,
        client.lease_time_to_live(lease.id, None),
    )
    .await
    .map_err(|_| anyhow!("no answer within {:?}", args.connect.dial_timeout))
    .and_then(|answer| answer.map_err(anyhow::Error::from))
    .with_context(|| format!("etcd deleted {key} at revision {revision}, but asking why failed"))?;
    if status.ttl() >= 0 {
        bail!(
            "{key} was deleted by another client at revision {revision}, with {}s left on lease {id}",
            status.ttl()
        );
    }
    // The lease is gone too: it expired, or someone revoked it (`etcdctl lease revoke`). etcd started
    // the countdown after `asked_at`, so it cannot expire before `asked_at + ttl`: a lease gone earlier
    // was revoked. (A revoke seen only after that instant, through a slow watch, reads as an expiry: the
    // one case this cannot tell.)
    let after = lease.asked_at.elapsed();
    if after < Duration::from_secs(ttl as u64) {
        println!(
            "4. lease {id} was revoked after {after:.1?}, before its TTL of {ttl}s ran out \
             (`etcdctl lease revoke` does that): etcd deleted {key} with it at revision {revision}"
        );
    } else {
        println!("4. {key} expired after {after:.1?}: etcd deleted it with lease {id} at revision {revision}");
    }
    Ok(())
}

// 5. Revoke the lease, on Ctrl-C or SIGTERM or after a failed wait: it ends the lease now and deletes its
//    keys before it answers; without it the key would linger until the TTL runs out. Say what it really
//    did: read the key first, because another client may have overwritten it, which takes it off our
//    lease (a revoke then leaves it alone). Both calls together are bounded by the dial timeout, so
//    stopping never hangs on an etcd that stopped answering. Returns what happened, in words.
async fn revoke(client: &mut Client, args: &cli::Args, lease: &Lease) -> Result<String> {
    let (key, dial_timeout, ttl) = (&args.key, args.connect.dial_timeout, lease.ttl);
    let id = format!("{:016x}", lease.id);
    let deadline = tokio::time::Instant::now() + dial_timeout;
    let no_answer = || {
        anyhow!(
            "etcd did not answer within {dial_timeout:?}, so lease {id} may not be revoked; \
             {key} goes when its TTL of {ttl}s runs out, since nobody renews it"
        )
    };
    // The lease the key is on now: Some(0) for none, None for a key that is gone.
    let before = match tokio::time::timeout_at(deadline, client.get(key.as_str(), None)).await {
        Ok(Ok(got)) => Ok(got.kvs().first().map(|kv| kv.lease())),
        Ok(Err(e)) => Err(e),
        Err(_) => return Err(no_answer()),
    };
    tokio::time::timeout_at(deadline, client.lease_revoke(lease.id))
        .await
        .map_err(|_| no_answer())?
        .with_context(|| format!("revoke lease {id}"))?;
    Ok(match before {
        Ok(Some(on)) if on == lease.id => format!("revoked lease {id}, so etcd deleted {key} at once"),
        Ok(Some(_)) => format!(
            "revoked lease {id}; {key} was overwritten by another client and is no longer on it, so it stays"
        ),
        Ok(None) => format!("revoked lease {id}; {key} was already gone, so it deleted nothing"),
        Err(e) => {
            log::debug!("reading {key} before the revoke failed: {e}");
            format!("revoked lease {id}, so etcd deleted {key} if it was still on it")
        }
    })
}

/// Why this program refuses a key that exists, and what to do: one line.
fn taken(key: &str) -> String {
    format!(
        "{key} already exists and this program did not create it: on a lease, etcd would delete it when \
         the lease ends; choose another key with --key, or remove it first with `etcdctl del {key}`"
    )
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
