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

mod candidate;
mod cli;
mod observer;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{
    Client, EventType, GetOptions, ProclaimOptions, ResignOptions, SortOrder, SortTarget,
    WatchOptions,
};
use log::debug;
use recipes::kept_lease::Session;
use recipes::shutdown::{ExitBudget, Shutdown};
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
    recipes::errors::report(run(args).await)
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
            candidate::candidate(client, &args, &id, hold, &mut shutdown, &mut exit).await
        }
        cli::Mode::Observe => observer::observe(client, &args.name, &mut shutdown).await,
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
        .max_decoding_message_size(recipes::resuming_watch::MAX_RESPONSE)
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
