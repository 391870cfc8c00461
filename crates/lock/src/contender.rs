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
use etcd_client::{Client, EventType, LockOptions, WatchOptions};
use lock::{LockKey, TryOutcome, FIRST_PAUSE, MAX_PAUSE};
use log::debug;
use recipes::kept_lease::Session;
use recipes::shutdown::{ExitBudget, Shutdown};

use crate::{cli, Outcome};

/// Contender mode: one session; acquire, hold, release. Run it in several terminals.
pub async fn contend(
    mut client: Client,
    args: &cli::Args,
    hold: Duration,
    try_once: bool,
    shutdown: &mut Shutdown,
    exit: &mut ExitBudget,
) -> Result<Outcome> {
    // A session, as in the demo: a lease, renewed in the background while we wait and while we hold.
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

    // Always end the session by revoking its lease: this also removes our key if we are still queued or
    // holding (Go: `session.Close()`).
    //    Bounded like every call on the way out: if etcd does not answer, the lease (and our key) goes when
    //    its TTL runs out, since nobody renews it any more.
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
                     expires, {}s after its last renewal",
                    grant.ttl()
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

    // 3. Release: `unlock` deletes our key, which wakes the next contender. The time is taken before
    //    unlocking: the work is over before the next holder can start. Bounded by the dial timeout: if etcd
    //    does not answer, revoking the lease (which ends the session) deletes our key, or failing that it
    //    goes when the lease's TTL runs out. A freeze can break the connection while the unlock is on its way (the call then fails at once
    //    with a transport error): ask again, on a new connection, with growing pauses, within the same
    //    budget. Deleting our own key twice is harmless.
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
    // The lock call waits on the server until every key queued before ours is deleted. Dropping it
    // (as `select!` does on Ctrl-C) cancels the call, and etcd removes our queued key.
    //
    // If the connection breaks while we wait, ask again with the same lease. After an etcd restart the
    // lock service finds our key `<name>/<lease>` still there and keeps its create revision, so we keep
    // our place in the queue. If etcd kept running (a freeze, a dropped connection), it deletes the key
    // when it notices our first call was cancelled, maybe after the call made again found that key:
    // so the key is read back after the lock is granted (below). Keep asking, with growing pauses, for as long as the session lives; an
    // error that retrying cannot fix (say, the lease is gone) ends the wait.
    let mut pause = FIRST_PAUSE;
    let mut told = false;
    loop {
        let attempt = tokio::select! {
            locked = client.lock(name, Some(LockOptions::new().with_lease(lease))) => locked,
            signal = shutdown.recv() => {
                println!("{signal}: stopped waiting for {name}");
                return Ok(None);
            }
            why = session.lost() => bail!("lost the session while waiting for {name}: {why}"),
        };
        match attempt {
            Ok(locked) => {
                let key = String::from_utf8_lossy(locked.key()).into_owned();
                // The fencing token is the key's create revision, which the reply does not carry: read
                // it back. That also checks that the key still exists: the lock call answers once the
                // keys queued before ours are gone, without checking that ours is still there.
                if let Some(held) = granted(client, &key, lease).await? {
                    return Ok(Some(held));
                }
                // Our key was deleted while we waited, although our lease lives. etcd does that when
                // it sees a lock call cancelled: after a broken connection, the call we made first
                // ends on the server only when etcd notices, and its clean-up deletes `<name>/<lease>`,
                // the same key our call made again may have found and queued with. Queue again.
                say_deleted_while_waiting(&key, lease);
                continue;
            }
            // etcd 3.5 reads the key back itself before it answers, and says Go's ErrSessionExpired
            // ("mutex: session is expired") when it is gone: the same case as above, told by etcd.
            Err(e) if recipes::errors::explain(&e).contains("session is expired") => {
                let key = format!("{name}/{lease:x}");
                debug!("lock {name}: {e:?}");
                lease_lives_on(client, &key, lease).await?;
                say_deleted_while_waiting(&key, lease);
                continue;
            }
            Err(e) if recipes::errors::is_transient(&e) => {
                debug!("lock {name} failed, asking again in {pause:?}: {e:?}");
                if !told {
                    println!(
                        "lost the connection to etcd while waiting ({}); asking again with the same \
                         lease, which keeps its place in the queue if etcd still holds its key",
                        recipes::errors::explain(&e)
                    );
                    told = true;
                }
            }
            Err(e) => {
                debug!("lock {name}: {e:?}");
                bail!("lock {name}: {}", recipes::errors::explain(&e));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            signal = shutdown.recv() => {
                println!("{signal}: stopped waiting for {name}");
                return Ok(None);
            }
            why = session.lost() => bail!("lost the session while waiting for {name}: {why}"),
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Deletes our lock key `held`, asking again on a new connection after a transport error, all within the
/// exit budget. An error that retrying cannot fix is an [`UnlockFailed`].
async fn unlock(client: &mut Client, held: &LockKey, exit: &mut ExitBudget) -> Result<()> {
    let mut pause = Duration::ZERO;
    loop {
        let unlock = async {
            tokio::time::sleep(pause).await;
            client.unlock(held.key.as_str()).await
        };
        match exit.call(format!("unlock {}", held.key), unlock).await {
            Ok(_) => return Ok(()),
            Err(e)
                if e.downcast_ref::<etcd_client::Error>()
                    .is_some_and(recipes::errors::is_transient) =>
            {
                pause = (pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
                debug!("{e:#}; asking again in {pause:?}");
            }
            Err(e) => {
                return Err(UnlockFailed {
                    key: held.key.clone(),
                    why: recipes::errors::one_line(&e),
                }
                .into())
            }
        }
    }
}

/// The lock key that a lock call granted, read back: its create revision is the fencing token. `None` if
/// the key no longer exists although `lease` still lives (then queue again); an error if the lease is gone,
/// since the key went with it.
async fn granted(client: &mut Client, key: &str, lease: i64) -> Result<Option<LockKey>> {
    let got = client
        .get(key, None)
        .await
        .with_context(|| format!("get {key}"))?;
    if let Some(kv) = got.kvs().first() {
        return Ok(Some(LockKey {
            create_revision: kv.create_revision(),
            key: key.to_string(),
        }));
    }
    lease_lives_on(client, key, lease).await?;
    Ok(None)
}

/// Says that our queued `key` is gone while `lease` lives, and that we queue again.
fn say_deleted_while_waiting(key: &str, lease: i64) {
    println!(
        "our key {key} was deleted while we waited, although lease {lease:016x} is alive: etcd removes \
         the key of a lock call it sees cancelled, as when the connection broke; asking again, at the \
         back of the queue"
    );
}

/// Our lock `key` is gone: asks etcd whether `lease` is too, rather than guess, and fails if it is.
async fn lease_lives_on(client: &mut Client, key: &str, lease: i64) -> Result<()> {
    let left = client
        .lease_time_to_live(lease, None)
        .await
        .with_context(|| {
            format!("{key} is gone from the queue; ask etcd about lease {lease:016x}")
        })?
        .ttl();
    if left <= 0 {
        bail!(
            "{key} is gone from the queue: etcd says lease {lease:016x} no longer exists \
             (it expired or was revoked), and its keys went with it"
        );
    }
    debug!("{key} is gone, but lease {lease:016x} lives for {left}s more");
    Ok(())
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
