//! # election: leader election
//!
//! One of several copies of a service must do what only one may do (run the scheduler, own a shard):
//! etcd's election service picks it, and another when it goes. The demo is etcd's Go example (a wins, b
//! waits, a proclaims, a resigns, b wins), then a leader crashes. One candidate of your own is
//! `cargo run -p election -- --id a --hold 10` (src/candidate.rs); `--observe` (src/observer.rs) prints
//! each new leader. Start several of each, `kill -9` the leader, and b takes over about `--ttl` later.

mod candidate;
mod cli;
mod observer;
mod support;

use anyhow::{bail, Context, Result};
use election::current_leader;
use etcd_client::{Client, LeaderKey, ProclaimOptions, ResignOptions};
use recipes::kept_lease::Session;
use recipes::shutdown::{ExitBudget, Shutdown};
use support::{b_won_within, leader_key, queued, text, Candidate, Waiting};

// The single-threaded runtime runs the few background tasks (renewals, b's campaign) while main awaits.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    etcd_connect::init();
    let args = cli::Args::parse_or_exit();
    recipes::errors::report(run(args).await)
}

async fn run(args: cli::Args) -> Result<()> {
    // Listen for Ctrl-C / SIGTERM before anything can block, so a signal always leads to a clean resign.
    let mut shutdown = Shutdown::listen()?;
    // 0. Connect: `dial` probes the endpoints within --dial-timeout (`Client::connect` alone is lazy).
    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout})
    let dialing = etcd_connect::dial(&args.connect, |eps, opts| Client::connect(eps, Some(opts)));
    let client = match shutdown.unless_stopped(dialing).await {
        Ok(client) => client?,
        Err(signal) => {
            println!("{signal}: stopped before connecting"); // nothing is held yet: nothing to give up
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());
    match args.mode() {
        cli::Mode::Demo => demo(client, &args, &mut shutdown).await,
        cli::Mode::Candidate { id, hold } => {
            candidate::candidate(client, &args, &id, hold, &mut shutdown).await
        }
        cli::Mode::Observe => observer::observe(client, &args.name, &mut shutdown).await,
    }
}

/// etcd's Go election example, then a crash. Every lease it grants is revoked at the end, whatever happens.
async fn demo(mut c: Client, args: &cli::Args, shutdown: &mut Shutdown) -> Result<()> {
    let mut leases = Vec::new();
    let steps = shutdown.unless_stopped(demo_steps(&mut c, &args.name, args.ttl, &mut leases));
    let steps = steps
        .await
        .inspect_err(|signal| println!("{signal}: stopping the demo early"));
    // Go: defer s1.Close(). Revoking a lease deletes its keys: no candidate of the demo stays, even after a
    // failed step. The calls on the way out share one budget, the dial timeout, so they never hang.
    let mut exit = ExitBudget::new(args.connect.dial_timeout);
    let mut revoked = Ok(());
    for &lease in &leases {
        let what = format!("revoke lease {lease:016x}");
        match exit.call(what, c.lease_revoke(lease)).await {
            Err(e) if !format!("{e:#}").contains("lease not found") => revoked = Err(e),
            _ => {} // revoked, or expired (step 8's)
        }
    }
    steps.unwrap_or(Ok(()))?;
    revoked?;
    support::say_what_is_left(&mut c, &args.name, &leases, &mut exit).await
}

async fn demo_steps(c: &mut Client, name: &str, ttl: i64, leases: &mut Vec<i64>) -> Result<()> {
    support::refuse_a_busy_election(c, name).await?;
    let a = session(c, ttl, leases).await?;
    let b = session(c, ttl, leases).await?;
    let (lease_a, lease_b, ttl) = (a.lease_id(), b.lease_id(), a.ttl());
    let every = ttl as f64 / 3.0;
    println!("candidate a has lease {lease_a:016x}, candidate b has lease {lease_b:016x} (ttl {ttl}s, renewed every {every:.1}s)");
    // Go: e1 := concurrency.NewElection(s1, "/election"). etcd-client has no election object: each
    // call names the election, and takes the lease (campaign) or the leader key (proclaim, resign).
    let leader_a = a_campaigns(c, name, lease_a).await?;
    let (waiting, rev_b, first) = b_campaigns(c, name, lease_b).await?;
    let (leads, key, rev) = (first.value, first.key, first.create_revision);
    let key_b = format!("{name}/{lease_b:x}");
    println!("2. candidate b is waiting: {leads} leads (b's key {key_b}, revision {rev_b}, is queued behind {key}, revision {rev})");
    a_proclaims(c, name, &leader_a).await?;
    ask_who_leads(c, name).await?;
    resign(c, name, "a", &leader_a).await?;
    println!("5. leader a resigned: {} is deleted", text(leader_a.key()));
    b_wins(c, name, waiting, &key_b).await?;
    println!("-- beyond the Go example --");
    a_crashes(c, name, lease_b, leases).await?;
    Ok(()) // dropping the sessions stops the renewals; `demo` revokes the leases
}

/// A lease: its ID and the TTL etcd granted. `demo` revokes it at the end.
async fn grant(c: &mut Client, ttl: i64, leases: &mut Vec<i64>) -> Result<(i64, i64)> {
    let grant = c.lease_grant(ttl, None).await.context("grant a lease")?; // Go: cli.Grant(ctx, ttl)
    leases.push(grant.id());
    Ok((grant.id(), grant.ttl()))
}

/// A lease renewed every TTL/3 in a task; if the process dies, etcd deletes its keys one TTL later.
async fn session(c: &mut Client, ttl: i64, leases: &mut Vec<i64>) -> Result<Session> {
    // Go: s1, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
    let (id, ttl) = grant(c, ttl, leases).await?;
    Session::start(c, id, ttl).await
}

/// 1. etcd writes `<name>/<lease hex>` = "a" on a's lease, and answers once it is the oldest key there.
async fn a_campaigns(c: &mut Client, name: &str, lease: i64) -> Result<LeaderKey> {
    let doing = format!("candidate a: campaign for {name}");
    // Go: err = e1.Campaign(ctx, "a")
    let leader = leader_key(&c.campaign(name, "a", lease).await.context(doing)?, "a")?;
    let (key, rev) = (text(leader.key()), leader.rev());
    println!("1. candidate a campaigned and won {name} at once: its key {key} was created at revision {rev}");
    println!("   (a candidate key is {name}/ and the lease ID in hex without leading zeros, the key Go's concurrency.Election writes)");
    Ok(leader)
}

/// 2. (and 8.) b's campaign returns only once the older keys are gone: it runs in a task, like a goroutine.
async fn b_campaigns(c: &mut Client, name: &str, lease: i64) -> Result<(Waiting, i64, Candidate)> {
    let (mut client_b, name_b) = (c.clone(), name.to_string());
    // Go: go func() { e2.Campaign(ctx, "b") }()
    let waiting = tokio::spawn(async move { client_b.campaign(name_b, "b", lease).await });
    let (rev_b, first) = queued(c, name, &format!("{name}/{lease:x}")).await?;
    Ok((waiting, rev_b, first))
}

/// 3. Proclaim rewrites a's key, keeping its create revision (a still leads), to tell observers news.
async fn a_proclaims(c: &mut Client, name: &str, leader_a: &LeaderKey) -> Result<()> {
    let doing = format!("candidate a: proclaim on {name}");
    let options = Some(ProclaimOptions::new().with_leader(leader_a.clone()));
    // Go: err = e1.Proclaim(ctx, "a-v2")
    let done = c.proclaim("a-v2", options).await.context(doing)?;
    let rev = done.header().map_or(0, |h| h.revision());
    println!(
        "3. leader a proclaimed the value a-v2 at revision {rev}: no new election, b keeps waiting"
    );
    Ok(())
}

/// 4. Anyone can ask who leads: the oldest key under `<name>/`, with the value last proclaimed.
async fn ask_who_leads(c: &mut Client, name: &str) -> Result<()> {
    // Go: resp, err := e1.Leader(ctx). `current_leader` (src/lib.rs) says "nobody" as None, not an error.
    let Some(now) = current_leader(c, name).await.context("ask who leads")? else {
        bail!("etcd says nobody leads {name}, although a never resigned: did its lease expire?");
    };
    let (value, key) = (text(now.value()), text(now.key()));
    let (created, written) = (now.create_revision(), now.mod_revision());
    println!("4. client.leader({name}) answers {value}: key {key}, created at revision {created} (a's campaign), last written at revision {written} (the proclaim)");
    Ok(())
}

/// 5., 7., 9. Resign deletes the leader's key if it still has its create revision: the next one leads.
async fn resign(c: &mut Client, name: &str, who: &str, leader: &LeaderKey) -> Result<()> {
    let doing = format!("candidate {who}: resign from {name}");
    let options = Some(ResignOptions::new().with_leader(leader.clone()));
    // Go: err = e1.Resign(ctx)
    c.resign(options).await.context(doing)?;
    Ok(())
}

/// 6. b's campaign returns, keeping the create revision its key got when it campaigned; 7. b resigns.
async fn b_wins(c: &mut Client, name: &str, waiting: Waiting, key_b: &str) -> Result<()> {
    let leader_b = b_won_within(waiting, key_b, "of a resigning").await?;
    let rev = leader_b.rev();
    println!(
        "6. candidate b won {name}: its key {key_b} keeps revision {rev} from when it campaigned"
    );
    resign(c, name, "b", &leader_b).await?;
    let Some(now) = current_leader(c, name).await.context("ask who leads")? else {
        println!("7. leader b resigned: client.leader({name}) now answers that nobody leads");
        return Ok(());
    };
    let now = text(now.value());
    println!("7. leader b resigned, and {now} leads {name} now: another candidate joined");
    Ok(())
}

/// 8. A crashed leader does not resign: its key goes when its lease expires. Here, a lease nobody renews.
async fn a_crashes(c: &mut Client, name: &str, lease_b: i64, leases: &mut Vec<i64>) -> Result<()> {
    let (lease, ttl) = grant(c, 2, leases).await?; // a short TTL keeps the demo short
    let granted = std::time::Instant::now();
    let doing = format!("candidate a: campaign for {name} again");
    let crashed = leader_key(&c.campaign(name, "a", lease).await.context(doing)?, "a")?;
    let crashed_key = text(crashed.key());
    let (waiting, _, _) = b_campaigns(c, name, lease_b).await?;
    println!("8. a leads again with {crashed_key}, on a {ttl}s lease it then stops renewing, as a killed process does; b waits");
    // 9. b wins up to one TTL after a's last renewal (etcd checks for expired leases every 0.5 s or so).
    let leader_b = b_won_within(waiting, &format!("{name}/{lease_b:x}"), "of a's crash").await?;
    let took = granted.elapsed();
    println!("9. b won {name} {took:.1?} after a's last renewal: a's lease expired, so etcd deleted {crashed_key}; a crashed leader holds an election for up to its TTL");
    resign(c, name, "b", &leader_b).await?;
    println!("   leader b resigned");
    Ok(())
}
