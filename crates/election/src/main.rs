//! # election: leader election
//!
//! Several copies of a service run; one of them must do the work only one may do (run the scheduler, own
//! the shard, answer as primary). etcd's election service picks that one, and picks another when it goes.
//! The demo is etcd's Go example in Rust: candidate a campaigns and wins, b campaigns and waits; a
//! *proclaims* a new value, `leader` shows it; a resigns and b wins. Then what happens when a leader
//! crashes instead of resigning: its lease expires, and b wins one TTL later.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p election                            # the demo: two candidates in one process
//! cargo run -p election -- --id a --hold 10        # a candidate: campaign, lead 10 s, resign
//! cargo run -p election -- --observe               # print every change of leader until Ctrl-C
//! RUST_LOG=debug cargo run -p election -- --id a --hold 10   # also shows every lease renewal
//! ```
//!
//! A candidate campaigns with a *session*: a lease kept alive in the background. Its candidate key is
//! attached to that lease, so when the leader dies the lease expires (after `--ttl` seconds) and the next
//! candidate wins on its own. Ctrl-C or SIGTERM resigns at once.
//!
//! Try next: start `--observe` in one terminal and `--id a --hold 20`, `--id b --hold 20`, `--id c --hold
//! 20` in three more; `kill -9` the leader and time how long the next one waits (about `--ttl`). Then run a
//! Go candidate in the same election (the README shows one): it writes the same keys.

mod cli;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use election::{Session, FIRST_PAUSE, MAX_PAUSE};
use etcd_client::{
    Client, EventType, GetOptions, LeaderKey, ProclaimOptions, ResignOptions, SortOrder,
    SortTarget, WatchOptions,
};
use etcd_connect::{ExitBudget, Shutdown};
use log::debug;
use tokio::time::Instant;

/// How long the demo waits for something etcd should do at once (queue a candidate, hand over the
/// leadership), or within a short TTL (step 8).
const DEMO_TIMEOUT: Duration = Duration::from_secs(10);

/// The TTL of the lease of the candidate that crashes in the demo's step 8: short, so the demo stays short.
const CRASH_TTL: i64 = 2;

// A few sequential calls plus small background tasks (the lease renewals, candidate b's campaign): the
// single-threaded runtime runs them all while the main task awaits etcd.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    etcd_connect::init();
    let args = cli::Args::parse_or_exit();
    etcd_connect::report(run(args).await)
}

async fn run(args: cli::Args) -> Result<()> {
    // Listen for Ctrl-C / SIGTERM before anything can block, so a signal always leads to a clean resign.
    let mut shutdown = Shutdown::listen()?;

    // 0. Connect. Underneath, `etcd_connect::connect` calls `Client::connect(endpoints, options)` and then
    //    asks the server for its `status()` within --dial-timeout, because `Client::connect` is lazy: it
    //    succeeds even when nothing listens. Read crates/etcd-connect/src/lib.rs for the details.
    //    Ctrl-C stops it at once: nothing is held yet, so there is nothing to give up.
    let client = tokio::select! {
        client = etcd_connect::connect(&args.connect) => client?,
        signal = shutdown.recv() => {
            println!("{signal}: stopped before connecting");
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // Calls made on the way out (resign, revoke) share one budget, the dial timeout, so that stopping never
    // hangs on an etcd that stopped answering.
    let mut exit = ExitBudget::new(args.connect.dial_timeout);
    match args.mode() {
        cli::Mode::Demo => demo(client, &args, &mut shutdown, &mut exit).await,
        cli::Mode::Candidate { id, hold } => {
            candidate(client, &args, &id, hold, &mut shutdown, &mut exit).await
        }
        cli::Mode::Observe => observe(client, &args.name, &mut shutdown).await,
    }
}

// ---------------------------------------------------------------------------------------------------------
// The demo: two candidates in one process.
// ---------------------------------------------------------------------------------------------------------

async fn demo(
    mut client: Client,
    args: &cli::Args,
    shutdown: &mut Shutdown,
    exit: &mut ExitBudget,
) -> Result<()> {
    let name = &args.name;
    // Every lease the demo grants, so that each is revoked below whatever happens.
    let mut leases = Vec::new();
    let steps = tokio::select! {
        result = demo_steps(&mut client, name, args.ttl, &mut leases) => result,
        signal = shutdown.recv() => {
            println!("{signal}: stopping the demo early");
            Ok(())
        }
    };
    // End the sessions as Go's `session.Close()` does: revoke their leases. (Their renewals stopped when
    // the steps above dropped them.) Revoking deletes every key attached to a lease, so no candidate of
    // this demo stays in the election, even when a step failed halfway. The crashed candidate's lease of
    // step 8 has expired by then, unless the demo stopped before: revoking it is then what removes its key.
    let mut revoked = Ok(());
    for &lease in &leases {
        let what = format!("revoke lease {lease:016x}");
        match exit.call(what, client.lease_revoke(lease)).await {
            Ok(_) => {}
            Err(e) if format!("{e:#}").contains("lease not found") => {
                debug!("lease {lease:016x} had expired already")
            }
            Err(e) => revoked = Err(e),
        }
    }
    steps?;
    revoked?;
    // Read back what is left: the demo refused to start on a non-empty election, but another candidate
    // may have joined since.
    let prefix = format!("{name}/");
    let left = exit
        .call(
            format!("count the keys under {prefix}"),
            client.get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            ),
        )
        .await?;
    let shown: Vec<String> = leases.iter().map(|id| format!("{id:016x}")).collect();
    match left.count() {
        0 => println!(
            "done: leases {} revoked or expired, nothing is left under {prefix}",
            shown.join(", ")
        ),
        n => println!(
            "done: leases {} revoked or expired; {n} key(s) of other candidates are under {prefix}",
            shown.join(", ")
        ),
    }
    Ok(())
}

async fn demo_steps(
    client: &mut Client,
    name: &str,
    ttl: i64,
    leases: &mut Vec<i64>,
) -> Result<()> {
    // The demo shows who wins, so it needs an election nobody else is standing in: a candidate from another
    // terminal would lead instead of a. Refuse, and say who is there, rather than compete with it.
    let prefix = format!("{name}/");
    let existing = client
        .get(
            prefix.as_str(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(3),
            ),
        )
        .await
        .with_context(|| format!("check that nobody stands in {name}"))?;
    if existing.count() > 0 {
        let keys: Vec<String> = existing
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect();
        bail!(
            "{prefix} already holds {} candidate key(s) ({}{}): the demo needs an election nobody else \
             stands in, so it stops rather than compete; stop those candidates, or run the demo with \
             --name /another-election",
            existing.count(),
            keys.join(", "),
            if existing.more() { ", ..." } else { "" }
        );
    }

    // Sessions. Go's `concurrency.NewSession(client)` grants a lease and renews it in a goroutine for as
    // long as the program runs. etcd-client has no sessions, so we do the same two things ourselves: grant
    // a lease here, then `Session::start` opens its keep-alive stream (`client.lease_keep_alive(id)`) and
    // renews it every TTL/3 in a background task (src/lib.rs). A candidate's key is attached to its lease:
    // if the process dies, the renewals stop and etcd deletes the key one TTL later.
    let grant_a = client
        .lease_grant(ttl, None)
        .await
        .context("grant candidate a's lease")?;
    leases.push(grant_a.id());
    let session_a = Session::start(client, grant_a.id(), grant_a.ttl()).await?;
    let grant_b = client
        .lease_grant(ttl, None)
        .await
        .context("grant candidate b's lease")?;
    leases.push(grant_b.id());
    let session_b = Session::start(client, grant_b.id(), grant_b.ttl()).await?;
    println!(
        "candidate a has lease {:016x}, candidate b has lease {:016x} (ttl {}s, renewed every {:.1}s)",
        session_a.lease_id(),
        session_b.lease_id(),
        session_a.ttl(),
        session_a.ttl() as f64 / 3.0
    );

    // 1. a campaigns (Go: `concurrency.NewElection(session, name).Campaign(ctx, "a")`). The election
    //    service writes the key `<name>/<lease ID in hex>` with the value "a", attached to a's lease, and
    //    answers once that key is the oldest under `<name>/`. Nobody else stands, so that is at once.
    //    The answer's leader key (name, key, create revision, lease) is a's proof of leadership: proclaim
    //    and resign take it.
    let won_a = client
        .campaign(name, "a", session_a.lease_id())
        .await
        .with_context(|| format!("candidate a: campaign for {name}"))?;
    let leader_a = won_a
        .leader()
        .cloned()
        .context("etcd answered a's campaign without a leader key")?;
    let key_a = String::from_utf8_lossy(leader_a.key()).into_owned();
    println!(
        "1. candidate a campaigned and won {name} at once: its key {key_a} was created at revision {}",
        leader_a.rev()
    );
    println!(
        "   (a candidate key is {name}/ and the lease ID in hex without leading zeros, the key Go's concurrency.Election writes)"
    );

    // 2. b campaigns too. Its campaign call blocks until every key created before its own is deleted, so
    //    it runs in a task of its own, like a goroutine in Go's example.
    let lease_b = session_b.lease_id();
    let mut client_b = client.clone();
    let name_b = name.to_string();
    let waiting = tokio::spawn(async move { client_b.campaign(name_b, "b", lease_b).await });
    //    A blocked campaign gives no sign that it reached etcd; its key appearing under `<name>/` does.
    let key_b = format!("{name}/{lease_b:x}");
    let (queued_b, first) = queued(client, &prefix, &key_b).await?;
    println!(
        "2. candidate b is waiting: {} leads (b's key {key_b}, revision {queued_b}, is queued behind {}, revision {})",
        first.value, first.key, first.create_revision
    );

    // 3. a proclaims a new value (Go: `election.Proclaim(ctx, "a-v2")`): the election service rewrites a's
    //    key, in a transaction that first checks that the key still exists with a's create revision. It
    //    keeps its create revision, so a stays the leader and b keeps waiting: no new election. Use it to
    //    tell observers something new about the leader (a new address, a new config version).
    let proclaimed = client
        .proclaim(
            "a-v2",
            Some(ProclaimOptions::new().with_leader(leader_a.clone())),
        )
        .await
        .with_context(|| format!("candidate a: proclaim on {name}"))?;
    println!(
        "3. leader a proclaimed the value a-v2 at revision {}: no new election, b keeps waiting",
        proclaimed.header().map_or(0, |h| h.revision())
    );

    // 4. Anyone can ask who leads (Go: `election.Leader(ctx)`): the oldest key under `<name>/`, with the
    //    value last proclaimed. `current_leader` (src/lib.rs) is `client.leader(name)` with "nobody leads"
    //    as `None` instead of an error.
    let Some(now) = election::current_leader(client, name)
        .await
        .with_context(|| format!("ask who leads {name}"))?
    else {
        bail!("etcd says nobody leads {name}, although a never resigned: did its lease expire?");
    };
    println!(
        "4. client.leader({name}) answers {}: key {}, created at revision {} (a's campaign), last written at revision {} (the proclaim)",
        String::from_utf8_lossy(now.value()),
        String::from_utf8_lossy(now.key()),
        now.create_revision(),
        now.mod_revision()
    );

    // 5. a resigns (Go: `election.Resign(ctx)`): the election service deletes a's key, if it still has a's
    //    create revision. b's key is now the oldest, and b's campaign returns.
    client
        .resign(Some(ResignOptions::new().with_leader(leader_a.clone())))
        .await
        .with_context(|| format!("candidate a: resign from {name}"))?;
    println!("5. leader a resigned: {key_a} is deleted");

    // 6. b's campaign returns. Its leader key keeps the create revision its key got when it campaigned in
    //    step 2: waiting does not change it.
    let won_b = tokio::time::timeout(DEMO_TIMEOUT, waiting)
        .await
        .with_context(|| format!("b was not elected within {DEMO_TIMEOUT:?} of a resigning"))?
        .context("candidate b's campaign task failed")?
        .with_context(|| format!("candidate b: campaign for {name}"))?;
    let leader_b = won_b
        .leader()
        .cloned()
        .context("etcd answered b's campaign without a leader key")?;
    if leader_b.key() != key_b.as_bytes() {
        bail!(
            "b was elected with the key {} instead of {key_b}",
            String::from_utf8_lossy(leader_b.key())
        );
    }
    println!(
        "6. candidate b won {name}: its key {key_b} keeps revision {} from when it campaigned",
        leader_b.rev()
    );

    // 7. b resigns. Nobody stands any more: `leader` now answers "election: no leader" (an error in
    //    etcd-client, `None` from `current_leader`).
    client
        .resign(Some(ResignOptions::new().with_leader(leader_b)))
        .await
        .with_context(|| format!("candidate b: resign from {name}"))?;
    let nobody = election::current_leader(client, name)
        .await
        .with_context(|| format!("ask who leads {name}"))?;
    match nobody {
        None => {
            println!("7. leader b resigned: client.leader({name}) now answers that nobody leads")
        }
        Some(kv) => println!(
            "7. leader b resigned, and {} leads {name} now: another candidate joined",
            String::from_utf8_lossy(kv.value())
        ),
    }

    println!("-- beyond the Go example --");

    // 8. A leader that crashes does not resign: nothing deletes its key but its lease running out. Here a
    //    campaigns again, on a fresh lease of CRASH_TTL seconds that nobody renews, which is what a
    //    SIGKILLed process leaves behind. Then b campaigns, on its session's lease, and waits.
    let crashed = client
        .lease_grant(CRASH_TTL, None)
        .await
        .context("grant the crashing candidate's lease")?;
    let granted = Instant::now();
    leases.push(crashed.id());
    let crashed_won = client
        .campaign(name, "a", crashed.id())
        .await
        .with_context(|| format!("candidate a: campaign for {name} again"))?;
    let crashed_key = crashed_won
        .leader()
        .map(|l| String::from_utf8_lossy(l.key()).into_owned())
        .context("etcd answered a's campaign without a leader key")?;
    let mut client_b = client.clone();
    let name_b = name.to_string();
    let waiting = tokio::spawn(async move { client_b.campaign(name_b, "b", lease_b).await });
    queued(client, &prefix, &key_b).await?;
    println!(
        "8. a leads again with {crashed_key}, on a {}s lease it then stops renewing, as a killed process does; b waits",
        crashed.ttl()
    );
    //    b's campaign returns when etcd deletes a's key, that is when a's lease expires: up to one TTL after
    //    the last renewal (etcd checks for expired leases every half second or so).
    let won_b = tokio::time::timeout(DEMO_TIMEOUT, waiting)
        .await
        .with_context(|| format!("b was not elected within {DEMO_TIMEOUT:?} of a's crash"))?
        .context("candidate b's campaign task failed")?
        .with_context(|| format!("candidate b: campaign for {name}"))?;
    let took = granted.elapsed();
    let leader_b = won_b
        .leader()
        .cloned()
        .context("etcd answered b's campaign without a leader key")?;
    println!(
        "9. b won {name} {took:.1?} after a's last renewal: a's lease expired, so etcd deleted {crashed_key}; a crashed leader holds an election for up to its TTL"
    );
    client
        .resign(Some(ResignOptions::new().with_leader(leader_b)))
        .await
        .with_context(|| format!("candidate b: resign from {name}"))?;
    println!("   leader b resigned");
    drop((session_a, session_b));
    Ok(())
}

/// One candidate key, as read from etcd.
struct Candidate {
    key: String,
    value: String,
    create_revision: i64,
}

/// Waits until `key` is queued under `prefix`, and returns its create revision and the first candidate
/// (the leader). It reads the queue (sorted by create revision: that order *is* the queue, leader first),
/// and if `key` is not there yet, watches the prefix from the revision right after that read until its
/// PUT arrives. Starting at the read's revision + 1 means no write can slip in between.
async fn queued(client: &mut Client, prefix: &str, key: &str) -> Result<(i64, Candidate)> {
    let queue = client
        .get(
            prefix,
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Create, SortOrder::Ascend),
            ),
        )
        .await
        .with_context(|| format!("list the candidates under {prefix}"))?;
    let Some(first) = queue.kvs().first() else {
        bail!("nobody stands under {prefix} although a leads");
    };
    let first = Candidate {
        key: String::from_utf8_lossy(first.key()).into_owned(),
        value: String::from_utf8_lossy(first.value()).into_owned(),
        create_revision: first.create_revision(),
    };
    if let Some(kv) = queue.kvs().iter().find(|kv| kv.key() == key.as_bytes()) {
        return Ok((kv.create_revision(), first));
    }
    let from = queue.header().map_or(0, |h| h.revision()) + 1;
    debug!("{key} is not queued yet: watching {prefix} from revision {from}");
    let mut watch = client
        .watch_client()
        .max_decoding_message_size(etcd_connect::MAX_RESPONSE)
        .watch(
            prefix,
            Some(WatchOptions::new().with_prefix().with_start_revision(from)),
        )
        .await
        .with_context(|| format!("watch {prefix}"))?;
    let put_of_key = async {
        loop {
            let Some(resp) = watch.message().await? else {
                bail!("etcd closed the watch on {prefix}");
            };
            if resp.canceled() {
                bail!(
                    "etcd cancelled the watch on {prefix}: {}",
                    resp.cancel_reason()
                );
            }
            let put = resp
                .events()
                .iter()
                .filter(|event| event.event_type() == EventType::Put)
                .filter_map(|event| event.kv())
                .find(|kv| kv.key() == key.as_bytes());
            if let Some(kv) = put {
                return Ok(kv.create_revision());
            }
        }
    };
    // Dropping `watch` on return closes the watch.
    let revision = tokio::time::timeout(DEMO_TIMEOUT, put_of_key)
        .await
        .with_context(|| {
            format!("{key} did not appear under {prefix} within {DEMO_TIMEOUT:?}")
        })??;
    Ok((revision, first))
}

// ---------------------------------------------------------------------------------------------------------
// A candidate: --id ID --hold SECS. Run it in several terminals.
// ---------------------------------------------------------------------------------------------------------

async fn candidate(
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
            etcd_connect::one_line(&e),
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
            Err(e) if election::is_transient(&e) => {
                debug!("campaign for {name} failed, campaigning again in {pause:?}: {e:?}");
                if !told {
                    println!(
                        "lost the connection to etcd while campaigning ({}); campaigning again with the \
                         same lease",
                        election::brief(&e)
                    );
                    told = true;
                }
            }
            Err(e) => {
                debug!("campaign for {name}: {e:?}");
                bail!("campaign for {name}: {}", election::brief(&e));
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
                    .is_some_and(election::is_transient) =>
            {
                pause = (pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
                debug!("{e:#}; asking again in {pause:?}");
            }
            Err(e) => {
                return Err(ResignFailed {
                    why: etcd_connect::one_line(&e),
                }
                .into())
            }
        }
    }
    println!("resigned {id} at={resigned_at}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// An observer: --observe. Prints every change of leader until Ctrl-C.
// ---------------------------------------------------------------------------------------------------------

async fn observe(mut client: Client, name: &str, shutdown: &mut Shutdown) -> Result<()> {
    // 1. observe says nothing while nobody leads: it sends the leader when there is one, then each new
    //    value and each new leader. So ask once, to tell the user why the screen stays blank.
    if election::current_leader(&mut client, name)
        .await
        .with_context(|| format!("ask who leads {name}"))?
        .is_none()
    {
        println!("nobody leads {name} yet");
    }
    println!("observing {name} (Ctrl-C to stop)");

    // 2. Observe (Go: `election.Observe(ctx)`): a stream of the leader's key-value, sent once for the
    //    current leader, again whenever the leader proclaims a new value, and when a new leader is
    //    elected. Nothing is sent when a leader resigns and nobody else stands.
    //
    //    The stream breaks with the connection (an etcd restart). Observe again, with growing pauses; the
    //    new stream starts with the current leader, which we skip if we printed it already: the key and
    //    its mod revision say whether anything changed.
    let mut last: Option<(Vec<u8>, i64)> = None;
    let mut pause = FIRST_PAUSE;
    let mut told = false;
    loop {
        let opened = tokio::select! {
            opened = client.observe(name) => opened,
            signal = shutdown.recv() => {
                println!("{signal}: stopped observing {name}");
                return Ok(());
            }
        };
        let broken = match opened {
            Ok(mut stream) => loop {
                let message = tokio::select! {
                    message = stream.message() => message,
                    signal = shutdown.recv() => {
                        println!("{signal}: stopped observing {name}");
                        return Ok(());
                    }
                };
                match message {
                    Ok(Some(resp)) => {
                        // A message means the stream works: the next break starts from a short pause again.
                        pause = FIRST_PAUSE;
                        told = false;
                        let Some(kv) = resp.kv() else { continue };
                        let seen = (kv.key().to_vec(), kv.mod_revision());
                        if last.as_ref() == Some(&seen) {
                            debug!("re-observed the leader we printed last: nothing changed");
                            continue;
                        }
                        // rev= is the leader key's create revision, the rev= its candidate printed
                        // when elected; a proclaim rewrites the key and keeps it.
                        let proclaimed = match &last {
                            Some((key, _)) if key.as_slice() == kv.key() => {
                                format!(", proclaimed at revision {}", kv.mod_revision())
                            }
                            _ => String::new(),
                        };
                        println!(
                            "leader of {name} is now {} (rev={}, key {}{proclaimed})",
                            String::from_utf8_lossy(kv.value()),
                            kv.create_revision(),
                            String::from_utf8_lossy(kv.key())
                        );
                        last = Some(seen);
                    }
                    Ok(None) => break "etcd ended the stream".to_string(),
                    Err(e) if election::is_transient(&e) => {
                        debug!("observe {name}: {e:?}");
                        break election::brief(&e);
                    }
                    Err(e) => {
                        debug!("observe {name}: {e:?}");
                        bail!("observe {name}: {}", election::brief(&e));
                    }
                }
            },
            Err(e) if election::is_transient(&e) => {
                debug!("observe {name}: {e:?}");
                election::brief(&e)
            }
            Err(e) => {
                debug!("observe {name}: {e:?}");
                bail!("observe {name}: {}", election::brief(&e));
            }
        };
        if !told {
            println!("lost the observe stream ({broken}); observing {name} again");
            told = true;
        }
        debug!("observing {name} again in {pause:?}");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            signal = shutdown.recv() => {
                println!("{signal}: stopped observing {name}");
                return Ok(());
            }
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
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
        .max_decoding_message_size(etcd_connect::MAX_RESPONSE);
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
            election::brief(&e)
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
