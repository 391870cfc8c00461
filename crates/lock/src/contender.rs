//! The contender: one session that waits for the lock, holds it, and releases it. Run it in several
//! terminals and watch them take turns:
//!
//! ```text
//! cargo run -p lock -- --hold 5          # wait for /lock, hold it 5 s, release it
//! cargo run -p lock -- --try             # take /lock only if it is free (else exit code 2), hold it 5 s
//! ```
//!
//! It prints `acquired <key> rev=<token> at=<ms>` and `released <key> at=<ms>`: rev= is the fencing token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, EventType, WatchOptions};
use lock::{LockKey, Retry, TryOutcome};
use log::debug;
use recipes::errors::with_backoff;
use recipes::kept_lease::Session;
use recipes::shutdown::{ExitBudget, Shutdown};

use crate::cli::{self, Outcome};

/// Contender mode: one session; acquire, hold, release. Run it in several terminals.
pub async fn contend(
    mut client: Client,
    args: &cli::Args,
    hold: Duration,
    try_once: bool,
    shutdown: &mut Shutdown,
    exit: &mut ExitBudget,
) -> Result<Outcome> {
    // A session, as in the demo (Go: `concurrency.NewSession(cli)`): a lease, renewed in the background
    // while we wait and while we hold.
    let grant = client
        .lease_grant(args.ttl, None)
        .await
        .context("grant the session's lease")?;
    let lease = grant.id();
    let outcome = match Session::start(&client, lease, grant.ttl()).await {
        Ok(mut session) => {
            let outcome = hold_the_lock(
                &mut client,
                args,
                hold,
                try_once,
                &mut session,
                shutdown,
                exit,
            )
            .await;
            // Stop renewing before revoking, or the renewer would see the lease vanish and report it.
            drop(session);
            outcome
        }
        Err(e) => Err(e),
    };
    end_session(&mut client, args, lease, grant.ttl(), outcome, exit).await
}

/// Ends the session as Go's `session.Close()` does: revokes its lease, which also removes our key if we
/// are still queued or holding. Bounded like every call on the way out: if etcd does not answer, the
/// lease (and our key) goes when its TTL runs out, since nobody renews it any more. Returns `outcome`, or
/// says what the revoke did about an unlock that failed.
async fn end_session(
    client: &mut Client,
    args: &cli::Args,
    lease: i64,
    granted_ttl: i64,
    outcome: Result<Outcome>,
    exit: &mut ExitBudget,
) -> Result<Outcome> {
    // Go: session.Close()
    let what = format!("revoke lease {lease:016x}");
    let revoked = exit.call(what, client.lease_revoke(lease)).await;
    // An unlock that failed left the lock held, until this revoke, or until the lease expires: say which.
    if let Some(failed) = outcome
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<UnlockFailed>())
    {
        let name = &args.name;
        return Err(match revoked {
            Ok(_) => {
                println!(
                    "session ended: revoked lease {lease:016x}, which deleted {}",
                    failed.key
                );
                anyhow!("{failed}; revoking lease {lease:016x} released {name} instead")
            }
            Err(e) => {
                debug!("{e:#}");
                anyhow!(
                    "{failed}; revoking it failed too, so {name} frees itself when lease {lease:016x} \
                     expires, {granted_ttl}s after its last renewal"
                )
            }
        });
    }
    match revoked {
        Ok(_) => println!("session ended: revoked lease {lease:016x}"),
        // After a failure (say, the lease already expired) the first error is the one to report.
        Err(e) if outcome.is_err() => debug!("{e:#}"),
        Err(e) => bail!(
            "{}; the lease, and any key on it, goes when its TTL of {}s runs out",
            recipes::errors::one_line(&e),
            args.ttl
        ),
    }
    outcome
}

/// `unlock` failed: the lock stays held until the session's lease is revoked or expires.
#[derive(Debug)]
struct UnlockFailed {
    key: String,
    /// The error in one line, starting with "unlock <key>: ".
    why: String,
}

impl std::fmt::Display for UnlockFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for UnlockFailed {}

/// Takes the lock (only if it is free with `--try`, else by queueing), holds it for `hold`, releases it.
async fn hold_the_lock(
    client: &mut Client,
    args: &cli::Args,
    hold: Duration,
    try_once: bool,
    session: &mut Session,
    shutdown: &mut Shutdown,
    exit: &mut ExitBudget,
) -> Result<Outcome> {
    let name = &args.name;
    let lease = session.lease_id();

    // 1. Get the lock: either only if it is free (--try), or by queueing for it.
    let held = if try_once {
        match try_lock(client, name, hold, session).await? {
            Some(held) => held,
            None => return Ok(Outcome::Taken),
        }
    } else {
        match wait_for_lock(client, name, hold, session, shutdown).await? {
            Some(held) => held,
            None => return Ok(Outcome::Done),
        }
    };
    // rev= is this holder's fencing token (see `put_if_holder` in src/lib.rs): pass it along with every
    // write the lock protects. at= lets you compare holders' times across terminals.
    println!(
        "acquired {} rev={} at={}",
        held.key,
        held.create_revision,
        unix_millis()
    );

    // 2. Hold it: do the protected work here. Stop early on a signal, or if the session is lost: then
    //    someone else may already hold the lock, and our token is stale.
    //    A short etcd outage does not lose the session: its renewer re-opens the keep-alive stream while
    //    the lease can still be alive. It is lost only when the lease is gone, and then we must stop.
    let stale = |why: String| {
        anyhow!(
            "lost {name} while holding it ({why}); another process may hold it now, so token {} is stale",
            held.create_revision
        )
    };
    //    The lock is also lost if etcd deletes our key while the lease lives: `etcdctl del`, or etcd ending
    //    a lock call of ours that a broken connection cancelled, late, after the call made again was
    //    granted. So watch the key too.
    tokio::select! {
        () = tokio::time::sleep(hold) => {}
        signal = shutdown.recv() => println!("{signal}: releasing {name} early"),
        why = session.lost() => return Err(stale(why)),
        why = key_deleted(client.clone(), &held, lease) => return Err(stale(why)),
    }
    //    After a freeze (SIGSTOP, a paused VM) both branches above can be ready at once. So before claiming
    //    that the work ran under the lock, check that the lease surely still lives.
    if !session.is_alive() {
        return Err(stale(session.lost().await));
    }

    // 3. Release (Go: `m.Unlock(ctx)`): `unlock` deletes our key, which wakes the next contender. The
    //    time is taken before unlocking: the work is over before the next holder can start. Bounded by the
    //    dial timeout: if etcd does not answer, revoking the lease (which ends the session) deletes our
    //    key, or failing that it goes when the lease's TTL runs out. A freeze can break the connection
    //    while the unlock is on its way (the call then fails at once with a transport error): `unlock`
    //    asks again, on a new connection, with growing pauses, within the same budget. Deleting our own
    //    key twice is harmless.
    let released_at = unix_millis();
    unlock(client, &held, exit).await?;
    println!("released {} at={released_at}", held.key);
    Ok(Outcome::Done)
}

/// The `--try` path: takes the lock `name` only if it is free. `None` if another session holds it.
async fn try_lock(
    client: &mut Client,
    name: &str,
    hold: Duration,
    session: &Session,
) -> Result<Option<LockKey>> {
    let lease = session.lease_id();
    println!(
        "trying {name} once (lease {lease:016x}, ttl {}s, hold {hold:?}) ...",
        session.ttl()
    );
    // The lock RPC always waits, so --try joins the queue and reads who is first in one transaction,
    // and leaves again at once if that is not us.
    match lock::try_acquire(client, name, lease).await? {
        TryOutcome::Acquired(held) => Ok(Some(held)),
        TryOutcome::Taken { holder } => {
            eprintln!(
                "{name} is taken: held by {} (rev={}); --try gives up instead of waiting",
                holder.key, holder.create_revision
            );
            Ok(None)
        }
    }
}

/// Queues for the lock `name` and waits until it is ours. `None` if a signal stopped the wait.
async fn wait_for_lock(
    client: &mut Client,
    name: &str,
    hold: Duration,
    session: &mut Session,
    shutdown: &mut Shutdown,
) -> Result<Option<LockKey>> {
    let lease = session.lease_id();
    println!(
        "waiting for {name} ... (lease {lease:016x}, ttl {}s, hold {hold:?})",
        session.ttl()
    );
    // `lock::acquire` (src/lib.rs) makes the lock call, which waits on the server until every key queued
    // before ours is deleted, and reads our key back for its fencing token. When the connection breaks it
    // asks again with the same lease, which keeps our place in the queue; when etcd deleted our key while
    // our lease lives, it queues again. Dropping it (as `select!` does on Ctrl-C) cancels the call, and
    // etcd removes our queued key. The session ends the wait if the lease is gone.
    let mut told = false;
    let on_retry = |retry: Retry<'_>| {
        match retry {
        Retry::Transient(e) if !told => {
            told = true;
            let why = recipes::errors::explain(e);
            println!(
                "lost the connection to etcd while waiting ({why}); asking again with the same lease, \
                 which keeps its place in the queue if etcd still holds its key"
            );
        }
        Retry::Transient(_) => {}
        Retry::Requeued { key } => println!(
            "our key {key} was deleted while we waited, although lease {lease:016x} is alive: etcd \
             removes the key of a lock call it sees cancelled, as when the connection broke; asking \
             again, at the back of the queue"
        ),
    }
    };
    // Go: m.Lock(ctx)
    tokio::select! {
        held = lock::acquire(client, name, lease, on_retry) => held.map(Some),
        signal = shutdown.recv() => {
            println!("{signal}: stopped waiting for {name}");
            Ok(None)
        }
        why = session.lost() => bail!("lost the session while waiting for {name}: {why}"),
    }
}

/// Deletes our lock key `held`, asking again on a new connection after a transport error
/// (`with_backoff`), all within the exit budget. An error that retrying cannot fix is an [`UnlockFailed`].
async fn unlock(client: &Client, held: &LockKey, exit: &mut ExitBudget) -> Result<()> {
    let unlock = || {
        let (mut client, key) = (client.clone(), held.key.clone());
        async move { client.unlock(key).await }
    };
    // `with_backoff` logs each retry at debug level: nothing to add.
    let unlocked = with_backoff(unlock, |_, _, _| {});
    match exit.call(format!("unlock {}", held.key), unlocked).await {
        Ok(_) => Ok(()),
        Err(e) => Err(UnlockFailed {
            key: held.key.clone(),
            why: recipes::errors::one_line(&e),
        }
        .into()),
    }
}

/// Resolves once etcd deletes the lock key `held`, saying what etcd says about `lease` then. It watches the
/// key from the revision after its creation, so a deletion that came before the watch is seen too. If the
/// watch cannot be opened or breaks (an etcd restart), it stays pending: the session still notices a lease
/// that is gone, which is what deletes a lock key in all but rare cases.
async fn key_deleted(mut client: Client, held: &LockKey, lease: i64) -> String {
    let from = held.create_revision + 1;
    let options = WatchOptions::new().with_start_revision(from);
    let mut watch_client = client
        .watch_client()
        .max_decoding_message_size(recipes::resuming_watch::MAX_RESPONSE);
    let deleted_at = match watch_client.watch(held.key.as_str(), Some(options)).await {
        Ok(mut events) => loop {
            match events.message().await {
                Ok(Some(resp)) if !resp.canceled() => {
                    let delete = resp
                        .events()
                        .iter()
                        .find(|event| event.event_type() == EventType::Delete);
                    if let Some(event) = delete {
                        break Some(event.kv().map_or(0, |kv| kv.mod_revision()));
                    }
                }
                other => {
                    debug!("the watch on {} ended: {other:?}", held.key);
                    break None;
                }
            }
        },
        Err(e) => {
            debug!("cannot watch {}: {e:?}", held.key);
            None
        }
    };
    let Some(at) = deleted_at else {
        return std::future::pending().await;
    };
    let key = &held.key;
    match client.lease_time_to_live(lease, None).await {
        Ok(left) if left.ttl() > 0 => format!(
            "etcd deleted its key {key} at revision {at}, although lease {lease:016x} is alive"
        ),
        Ok(_) => format!(
            "etcd deleted its key {key} at revision {at}: lease {lease:016x} no longer exists (it expired \
             or was revoked)"
        ),
        Err(e) => format!("etcd deleted its key {key} at revision {at} ({})", recipes::errors::explain(&e)),
    }
}

/// Milliseconds since the Unix epoch, to compare the printed times of processes on one machine.
fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970")
        .as_millis()
}
