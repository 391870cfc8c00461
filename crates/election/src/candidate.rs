//! A candidate: `cargo run -p election -- --id a --hold 10`. It campaigns for `--name` with a session (a
//! lease renewed in the background), leads for `--hold` seconds once elected, resigns, and revokes its
//! lease. Ctrl-C or SIGTERM resigns at once. Run it in several terminals, and `kill -9` the leader to see
//! the next one elected when its lease expires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use election::current_leader;
use etcd_client::{Client, EventType, LeaderKey, ResignOptions, WatchOptions};
use log::debug;
use recipes::errors::{explain, one_line, with_backoff};
use recipes::kept_lease::Session;
use recipes::shutdown::{ExitBudget, Shutdown};

use crate::cli;

pub async fn candidate(
    mut client: Client,
    args: &cli::Args,
    id: &str,
    hold: Duration,
    shutdown: &mut Shutdown,
) -> Result<()> {
    // A session, as in the demo: a lease, renewed in the background while we wait and while we lead.
    // Go: s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
    let grant = client
        .lease_grant(args.ttl, None)
        .await
        .context("grant the session's lease")?;
    let (lease, ttl) = (grant.id(), grant.ttl());
    // Calls made on the way out (resign, revoke) share one budget, the dial timeout, so that stopping never
    // hangs on an etcd that stopped answering.
    let mut exit = ExitBudget::new(args.connect.dial_timeout);
    let outcome = match Session::start(&client, lease, ttl).await {
        // The session is dropped at the end of this arm: its renewals stop before the revoke below, or
        // the renewer would see the lease vanish and report it.
        Ok(mut session) => {
            let term = Term {
                name: &args.name,
                id,
                hold,
                lease,
            };
            term.run(&mut client, &mut session, shutdown, &mut exit)
                .await
        }
        Err(e) => Err(e),
    };
    end_session(&mut client, lease, ttl, outcome, &mut exit).await
}

/// Always end the session by revoking its lease (Go: `session.Close()`): this also removes our key if we
/// are still waiting or leading. Bounded like every call on the way out: if etcd does not answer, the lease
/// (and our key) goes when its TTL runs out, since nobody renews it any more. Returns `outcome`, or what
/// the revoke adds to it.
async fn end_session(
    client: &mut Client,
    lease: i64,
    ttl: i64,
    outcome: Result<()>,
    exit: &mut ExitBudget,
) -> Result<()> {
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
                     {lease:016x} expires, {ttl}s after its last renewal",
                    failed.why,
                )
            }
        });
    }
    match revoked {
        Ok(_) => println!("session ended: revoked lease {lease:016x}"),
        // After a failure (say, the lease already expired) the first error is the one to report.
        Err(e) if outcome.is_err() => debug!("{e:#}"),
        Err(e) => bail!(
            "{}; the lease, and any key on it, goes when its TTL of {ttl}s runs out",
            one_line(&e),
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

/// One candidate's term: campaign for `name` as `id` with the session's `lease`, lead for `hold`, resign.
struct Term<'a> {
    name: &'a str,
    id: &'a str,
    hold: Duration,
    lease: i64,
}

impl Term<'_> {
    async fn run(
        &self,
        client: &mut Client,
        session: &mut Session,
        shutdown: &mut Shutdown,
        exit: &mut ExitBudget,
    ) -> Result<()> {
        let (name, id, hold, lease) = (self.name, self.id, self.hold, self.lease);
        // 1. Who leads now? Only to tell the user what to expect: by the time we campaign, it may have
        //    changed. (Go: `e.Leader(ctx)`; `current_leader` answers "nobody" as `None`, not an error.)
        let leads_now = match current_leader(client, name)
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
        let Some(leader) = self.campaign(client, session, shutdown).await? else {
            return Ok(()); // stopped by a signal while waiting
        };
        // rev= is the create revision of our key: it grows from one leader to the next, so it can serve as
        // a fencing token (see the lock topic). at= lets you compare leaders' times across terminals.
        println!("leader {id} rev={} at={}", leader.rev(), unix_millis());
        self.lead(client, &leader, session, shutdown).await?;
        self.resign(client, &leader, exit).await
    }

    /// 2. Campaign: the call waits on the server until every candidate key created before ours is deleted.
    ///    Dropping it (on Ctrl-C) cancels the call, and etcd deletes our key. `None` if a signal came.
    ///
    ///    If the connection breaks while we wait (etcd restarts, the network blips), campaign again with
    ///    the same lease, with growing pauses (`with_backoff`), for as long as the session lives. After an
    ///    etcd restart the election service finds our key `<name>/<lease>` still there and keeps its create
    ///    revision, so we keep our place in the line. (An etcd that kept running deletes the key when it
    ///    notices our first call was cancelled, maybe after the campaign made again found that key: so who
    ///    leads is read back after the campaign returns.) An error that retrying cannot fix ends it.
    async fn campaign(
        &self,
        client: &mut Client,
        session: &mut Session,
        shutdown: &mut Shutdown,
    ) -> Result<Option<LeaderKey>> {
        let (name, lease) = (self.name, self.lease);
        let mut told = false;
        loop {
            let again = |_: u32, e: &etcd_client::Error, _: Duration| {
                if !std::mem::replace(&mut told, true) {
                    println!(
                        "lost the connection to etcd while campaigning ({}); campaigning again with \
                         the same lease",
                        explain(e)
                    );
                }
            };
            let campaign = || {
                let (mut client, id) = (client.clone(), self.id.to_string());
                // Go: err = e.Campaign(ctx, id)
                async move { client.campaign(name, id, lease).await }
            };
            let won = tokio::select! {
                won = with_backoff(campaign, again) => won.with_context(|| format!("campaign for {name}"))?,
                signal = shutdown.recv() => {
                    println!("{signal}: stopped campaigning for {name}");
                    return Ok(None);
                }
                why = session.lost() => bail!("lost the session while campaigning for {name}: {why}"),
            };
            let leader = won
                .leader()
                .cloned()
                .context("etcd answered the campaign without a leader key")?;
            // The campaign returns once the keys created before ours are gone; it does not check that ours
            // is still there. So read back who leads before claiming it.
            if elected(client, name, &leader, lease).await? {
                return Ok(Some(leader));
            }
            // Our key is gone although our lease lives. etcd deletes it when it sees a campaign cancelled:
            // after a broken connection, the campaign we made first ends on the server only when etcd
            // notices, and its clean-up resigns `<name>/<lease>`, the key that our campaign made again may
            // have found and queued with. Campaign again.
            println!(
                "our key {} was deleted while we waited, although lease {lease:016x} is alive: etcd \
                 removes the key of a campaign it sees cancelled, as when the connection broke; \
                 campaigning again, at the back of the line",
                String::from_utf8_lossy(leader.key())
            );
        }
    }

    /// 3. Lead: do the work only the leader may do here, for `hold`. Stop early on a signal (then resign),
    ///    or with an error if the session is lost: then etcd may have deleted our key and elected someone
    ///    else. A short etcd outage does not lose the session: its renewer re-opens the keep-alive stream
    ///    while the lease can still be alive. It is lost only when the lease is gone.
    async fn lead(
        &self,
        client: &Client,
        leader: &LeaderKey,
        session: &mut Session,
        shutdown: &mut Shutdown,
    ) -> Result<()> {
        let (name, id) = (self.name, self.id);
        let no_longer = |why: String| {
            anyhow!(
                "{id} lost the leadership of {name} while leading ({why}); it is no longer leader, and \
                 another candidate may lead now"
            )
        };
        // We also stop leading if etcd deletes our key while the lease lives: `etcdctl del`, or etcd ending
        // a campaign of ours that a broken connection cancelled (it resigns our key), late, after the
        // campaign made again returned. So watch the key too.
        tokio::select! {
            () = tokio::time::sleep(self.hold) => {}
            signal = shutdown.recv() => println!("{signal}: resigning early"),
            why = session.lost() => return Err(no_longer(why)),
            why = key_deleted(client.clone(), leader, self.lease) => return Err(no_longer(why)),
        }
        // After a freeze (SIGSTOP, a paused VM) both branches above can be ready at once. So before claiming
        // that the work ran as leader, check that the lease surely still lives.
        if !session.is_alive() {
            return Err(no_longer(session.lost().await));
        }
        Ok(())
    }

    /// 4. Resign: the election service deletes our key (if it still has our create revision), which elects
    ///    the next candidate at once. The time is taken before resigning: our term is over before the next
    ///    leader's starts. Bounded by the dial timeout: if etcd does not answer, revoking the lease (which
    ///    ends the session) deletes our key, or failing that it goes when the lease's TTL runs out.
    ///    A freeze can break the connection while the resign is on its way (the call then fails at once
    ///    with a transport error): ask again, on a new connection, with growing pauses, within the same
    ///    budget. Resigning twice is harmless: it deletes our key only if it still has our create revision.
    async fn resign(
        &self,
        client: &Client,
        leader: &LeaderKey,
        exit: &mut ExitBudget,
    ) -> Result<()> {
        let resigned_at = unix_millis();
        let resign = || {
            let (mut client, leader) = (client.clone(), leader.clone());
            // Go: err = e.Resign(ctx)
            async move {
                client
                    .resign(Some(ResignOptions::new().with_leader(leader)))
                    .await
            }
        };
        let what = format!("resign from {}", self.name);
        if let Err(e) = exit.call(what, with_backoff(resign, |_, _, _| {})).await {
            return Err(ResignFailed { why: one_line(&e) }.into());
        }
        println!("resigned {} at={resigned_at}", self.id);
        Ok(())
    }
}

/// Whether the campaign that returned `leader` really made us leader, read back from etcd: our key is the
/// oldest under `<name>/`. `false` if our key is gone although `lease` still lives (then campaign again);
/// an error if the lease is gone, since our key went with it.
async fn elected(client: &mut Client, name: &str, leader: &LeaderKey, lease: i64) -> Result<bool> {
    let leads = current_leader(client, name)
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
