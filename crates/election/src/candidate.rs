//! A candidate: `cargo run -p election -- --id a --hold 10`. It campaigns for `--name` with a session (a
//! lease renewed in the background), leads for `--hold` seconds once elected, resigns, and revokes its
//! lease. Ctrl-C or SIGTERM resigns at once. Run it in several terminals, and `kill -9` the leader to see
//! the next one elected when its lease expires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use election::{FIRST_PAUSE, MAX_PAUSE};
use etcd_client::{Client, EventType, LeaderKey, ResignOptions, WatchOptions};
use log::debug;
use recipes::kept_lease::Session;
use recipes::shutdown::{ExitBudget, Shutdown};

use crate::cli;

pub async fn candidate(
    mut client: Client,
    args: &cli::Args,
    id: &str,
    hold: Duration,
    shutdown: &mut Shutdown,
    exit: &mut ExitBudget,
) -> Result<()> {
    // A session, as in the demo: a lease, renewed in the background while we wait and while we lead.
    let grant = client
        .lease_grant(args.ttl, None)
        .await
        .context("grant the session's lease")?;
    let lease = grant.id();
    let outcome = match Session::start(&client, lease, grant.ttl()).await {
        Ok(mut session) => {
            let outcome = campaign_and_lead(
                &mut client,
                &args.name,
                id,
                hold,
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

    // Always end the session by revoking its lease: this also removes our key if we are still waiting or
    // leading (Go: `session.Close()`). Bounded like every call on the way out: if etcd does not answer, the
    // lease (and our key) goes when its TTL runs out, since nobody renews it any more.
    let what = format!("revoke lease {lease:016x}");
    let revoked = exit.call(what, client.lease_revoke(lease)).await;
    // A resign that failed left us leader, until this revoke, or until the lease expires: say which.
    if let Some(failed) = outcome
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<ResignFailed>())
    {
        return Err(match revoked {
            Ok(_) => {
                println!("session ended: revoked lease {lease:016x}, which deleted our key");
                anyhow!(
                    "{}; revoking lease {lease:016x} ended our leadership instead",
                    failed.why
                )
            }
            Err(e) => {
                debug!("{e:#}");
                anyhow!(
                    "{}; revoking it failed too, so the next candidate is elected when lease \
                     {lease:016x} expires, {}s after its last renewal",
                    failed.why,
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

/// `resign` failed: we stay leader until the session's lease is revoked or expires.
#[derive(Debug)]
struct ResignFailed {
    /// The error in one line, starting with "resign from <name>: ".
    why: String,
}

impl std::fmt::Display for ResignFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for ResignFailed {}

async fn campaign_and_lead(
    client: &mut Client,
    name: &str,
    id: &str,
    hold: Duration,
    session: &mut Session,
    shutdown: &mut Shutdown,
    exit: &mut ExitBudget,
) -> Result<()> {
    let lease = session.lease_id();

    // 1. Who leads now? Only to tell the user what to expect: by the time we campaign, it may have changed.
    let leads_now = match election::current_leader(client, name)
        .await
        .with_context(|| format!("ask who leads {name}"))?
    {
        Some(kv) => format!("{} leads now", String::from_utf8_lossy(kv.value())),
        None => "nobody leads yet".to_string(),
    };
    println!(
        "{id} campaigns for {name} (lease {lease:016x}, ttl {}s, hold {hold:?}): {leads_now}",
        session.ttl()
    );

    // 2. Campaign. The call waits on the server until every candidate key created before ours is deleted.
    //    Dropping it (as `select!` does on Ctrl-C) cancels the call, and etcd deletes our key.
    //
    //    If the connection breaks while we wait (etcd restarts, the network blips), campaign again with
    //    the same lease. After an etcd restart the election service finds our key `<name>/<lease>` still
    //    there and keeps its create revision, so we keep our place in the line. (An etcd that kept running
    //    deletes the key when it notices our first call was cancelled, maybe after the campaign made
    //    again found that key: so who leads is read back after the campaign returns.) Keep asking, with growing pauses, for
    //    as long as the session lives; an error that retrying cannot fix (say, the lease is gone) ends it.
    let mut pause = FIRST_PAUSE;
    let mut told = false;
    let leader = loop {
        let attempt = tokio::select! {
            won = client.campaign(name, id, lease) => won,
            signal = shutdown.recv() => {
                println!("{signal}: stopped campaigning for {name}");
                return Ok(());
            }
            why = session.lost() => bail!("lost the session while campaigning for {name}: {why}"),
        };
        match attempt {
            Ok(won) => {
                let leader: LeaderKey = won
                    .leader()
                    .cloned()
                    .context("etcd answered the campaign without a leader key")?;
                //    The campaign returns once the keys created before ours are gone; it does not check
                //    that ours is still there. So read back who leads before claiming it.
                if elected(client, name, &leader, lease).await? {
                    break leader;
                }
                //    Our key is gone although our lease lives. etcd deletes it when it sees a campaign
                //    cancelled: after a broken connection, the campaign we made first ends on the server
                //    only when etcd notices, and its clean-up resigns `<name>/<lease>`, the key that our
                //    campaign made again may have found and queued with. Campaign again.
                println!(
                    "our key {} was deleted while we waited, although lease {lease:016x} is alive: etcd \
                     removes the key of a campaign it sees cancelled, as when the connection broke; \
                     campaigning again, at the back of the line",
                    String::from_utf8_lossy(leader.key())
                );
                continue;
            }
            Err(e) if recipes::errors::is_transient(&e) => {
                debug!("campaign for {name} failed, campaigning again in {pause:?}: {e:?}");
                if !told {
                    println!(
                        "lost the connection to etcd while campaigning ({}); campaigning again with the \
                         same lease",
                        recipes::errors::explain(&e)
                    );
                    told = true;
                }
            }
            Err(e) => {
                debug!("campaign for {name}: {e:?}");
                bail!("campaign for {name}: {}", recipes::errors::explain(&e));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            signal = shutdown.recv() => {
                println!("{signal}: stopped campaigning for {name}");
                return Ok(());
            }
            why = session.lost() => bail!("lost the session while campaigning for {name}: {why}"),
        }
        pause = (pause * 2).min(MAX_PAUSE);
    };
    // rev= is the create revision of our key: it grows from one leader to the next, so it can serve as a
    // fencing token (see the lock topic). at= lets you compare leaders' times across terminals.
    println!("leader {id} rev={} at={}", leader.rev(), unix_millis());

    // 3. Lead: do the work only the leader may do here. Stop early on a signal, or if the session is lost:
    //    then etcd may have deleted our key and elected someone else, so we are no longer leader.
    //    A short etcd outage does not lose the session: its renewer re-opens the keep-alive stream while
    //    the lease can still be alive. It is lost only when the lease is gone, and then we must stop.
    let no_longer = |why: String| {
        anyhow!(
            "{id} lost the leadership of {name} while leading ({why}); it is no longer leader, and \
             another candidate may lead now"
        )
    };
    //    We also stop leading if etcd deletes our key while the lease lives: `etcdctl del`, or etcd ending
    //    a campaign of ours that a broken connection cancelled (it resigns our key), late, after the
    //    campaign made again returned. So watch the key too.
    tokio::select! {
        () = tokio::time::sleep(hold) => {}
        signal = shutdown.recv() => println!("{signal}: resigning early"),
        why = session.lost() => return Err(no_longer(why)),
        why = key_deleted(client.clone(), &leader, lease) => return Err(no_longer(why)),
    }
    //    After a freeze (SIGSTOP, a paused VM) both branches above can be ready at once. So before claiming
    //    that the work ran as leader, check that the lease surely still lives.
    if !session.is_alive() {
        return Err(no_longer(session.lost().await));
    }

    // 4. Resign: the election service deletes our key (if it still has our create revision), which elects
    //    the next candidate at once. The time is taken before resigning: our term is over before the next
    //    leader's starts. Bounded by the dial timeout: if etcd does not answer, revoking the lease (which
    //    ends the session) deletes our key, or failing that it goes when the lease's TTL runs out.
    //    A freeze can break the connection while the resign is on its way (the call then fails at once
    //    with a transport error): ask again, on a new connection, with growing pauses, within the same
    //    budget. Resigning twice is harmless: it deletes our key only if it still has our create revision.
    let resigned_at = unix_millis();
    let mut pause = Duration::ZERO;
    loop {
        let resign = async {
            tokio::time::sleep(pause).await;
            client
                .resign(Some(ResignOptions::new().with_leader(leader.clone())))
                .await
        };
        match exit.call(format!("resign from {name}"), resign).await {
            Ok(_) => break,
            Err(e)
                if e.downcast_ref::<etcd_client::Error>()
                    .is_some_and(recipes::errors::is_transient) =>
            {
                pause = (pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
                debug!("{e:#}; asking again in {pause:?}");
            }
            Err(e) => {
                return Err(ResignFailed {
                    why: recipes::errors::one_line(&e),
                }
                .into())
            }
        }
    }
    println!("resigned {id} at={resigned_at}");
    Ok(())
}

/// Whether the campaign that returned `leader` really made us leader, read back from etcd: our key is the
/// oldest under `<name>/`. `false` if our key is gone although `lease` still lives (then campaign again);
/// an error if the lease is gone, since our key went with it.
async fn elected(client: &mut Client, name: &str, leader: &LeaderKey, lease: i64) -> Result<bool> {
    let leads = election::current_leader(client, name)
        .await
        .with_context(|| format!("ask who leads {name}"))?;
    let key = String::from_utf8_lossy(leader.key());
    let now = match &leads {
        Some(kv) if kv.key() == leader.key() && kv.create_revision() == leader.rev() => {
            return Ok(true)
        }
        Some(kv) => format!(
            "{} leads (key {})",
            String::from_utf8_lossy(kv.value()),
            String::from_utf8_lossy(kv.key())
        ),
        None => "nobody leads".to_string(),
    };
    // Not us: ask etcd whether our lease still lives, rather than guess.
    let left = client
        .lease_time_to_live(lease, None)
        .await
        .with_context(|| {
            format!(
                "the campaign for {name} returned, but {now}; ask etcd about lease {lease:016x}"
            )
        })?
        .ttl();
    if left <= 0 {
        bail!(
            "the campaign for {name} returned, but {now}: our key {key} is gone, and etcd says lease \
             {lease:016x} no longer exists (it expired or was revoked)"
        );
    }
    debug!(
        "the campaign for {name} returned, but {now}; lease {lease:016x} lives for {left}s more"
    );
    Ok(false)
}

/// Resolves once etcd deletes our candidate key (`leader`), saying what etcd says about `lease` then. It
/// watches the key from the revision after its creation, so a deletion that came before the watch is seen
/// too. If the watch cannot be opened or breaks (an etcd restart), it stays pending: the session still
/// notices a lease that is gone, which is what deletes a candidate key in all but rare cases.
async fn key_deleted(mut client: Client, leader: &LeaderKey, lease: i64) -> String {
    let key = String::from_utf8_lossy(leader.key()).into_owned();
    let options = WatchOptions::new().with_start_revision(leader.rev() + 1);
    let mut watch_client = client
        .watch_client()
        .max_decoding_message_size(recipes::resuming_watch::MAX_RESPONSE);
    let deleted_at = match watch_client.watch(key.as_str(), Some(options)).await {
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
                    debug!("the watch on {key} ended: {other:?}");
                    break None;
                }
            }
        },
        Err(e) => {
            debug!("cannot watch {key}: {e:?}");
            None
        }
    };
    let Some(at) = deleted_at else {
        return std::future::pending().await;
    };
    match client.lease_time_to_live(lease, None).await {
        Ok(left) if left.ttl() > 0 => format!(
            "etcd deleted our key {key} at revision {at}, although lease {lease:016x} is alive"
        ),
        Ok(_) => format!(
            "etcd deleted our key {key} at revision {at}: lease {lease:016x} no longer exists (it \
             expired or was revoked)"
        ),
        Err(e) => format!(
            "etcd deleted our key {key} at revision {at} ({})",
            recipes::errors::explain(&e)
        ),
    }
}

/// Milliseconds since the Unix epoch, to compare the printed times of processes on one machine.
fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970")
        .as_millis()
}
