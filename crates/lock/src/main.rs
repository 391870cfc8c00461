//! # lock: a distributed lock
//! The article's program: two sessions want `/lock`; session 1 gets it, session 2 waits, session 1
//! unlocks, session 2 gets it. Then fencing tokens, and a lock without a lease of your own. `--hold 5`
//! or `--try` runs a contender (src/contender.rs). Machinery: the recipes crate; reusable: src/lib.rs.

mod cli;
mod contender;
mod demo;

use std::process::ExitCode;

use anyhow::{Context, Result};
use etcd_client::{Client, LockOptions};
use lock::LockKey;
use recipes::kept_lease::Session;
use recipes::shutdown::{ExitBudget, Shutdown};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    let result = run(cli::Args::parse_or_exit()).await;
    result.unwrap_or_else(|e| recipes::errors::report(Err(e)))
}

async fn run(args: cli::Args) -> Result<ExitCode> {
    // Listen for Ctrl-C and SIGTERM before anything can block, so that a signal always ends cleanly.
    let mut shutdown = Shutdown::listen()?;
    // 0. Connect. `Client::connect` is lazy, so `dial` first asks each endpoint for its status within
    //    --dial-timeout, and explains a failure in one line. A signal stops it: nothing is held yet.
    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout})
    let dialing = etcd_connect::dial(&args.connect, |endpoints, options| {
        Client::connect(endpoints, Some(options))
    });
    let mut client = match shutdown.unless_stopped(dialing).await {
        Ok(client) => client?,
        Err(signal) => {
            println!("{signal}: stopped before connecting");
            return Ok(ExitCode::SUCCESS);
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());
    let mut exit = ExitBudget::new(args.connect.dial_timeout); // one deadline for unlock, revoke
    if let cli::Mode::Contend { hold, try_once } = args.mode() {
        let contender = contender::contend(client, &args, hold, try_once, &mut shutdown, &mut exit);
        return contender.await.map(cli::Outcome::exit_code);
    }
    // The demo, stopped early by a signal; then its sessions are closed, whatever happened.
    let mut leases = Vec::new(); // each session's lease, so that each is revoked below
    let demo = steps(&mut client, &args, &mut leases);
    let steps = shutdown.unless_stopped(demo).await.map_err(|signal| {
        println!("{signal}: stopping the demo early");
    });
    // Go: defer session1.Close(). Closing a session revokes its lease, which deletes every key on it:
    // nothing stays locked or queued, even when a step failed halfway.
    let mut revoked = Ok(());
    for &lease in &leases {
        let what = format!("revoke lease {lease:016x}");
        let revoke = exit.call(what, client.lease_revoke(lease)).await;
        revoked = revoked.and(revoke.map(drop));
    }
    steps.unwrap_or(Ok(())).and(revoked)?; // a failed step first; a signal is no failure
    demo::say_what_is_left(&mut client, &args.name, &leases, &mut exit).await?;
    Ok(ExitCode::SUCCESS)
}

/// The article's program, then the steps beyond it.
async fn steps(client: &mut Client, args: &cli::Args, leases: &mut Vec<i64>) -> Result<()> {
    let name = args.name.as_str();
    demo::nobody_is_there(client, name, &args.protected_key).await?;
    // Go: session1, err := concurrency.NewSession(cli): a lease that `Session::start` renews every TTL/3
    // in a task (etcd-client has no sessions). If the process dies, etcd deletes its keys a TTL later.
    let grant1 = client.lease_grant(args.ttl, None).await;
    let grant1 = grant1.context("grant session 1's lease")?;
    leases.push(grant1.id());
    let session1 = Session::start(client, grant1.id(), grant1.ttl()).await?;
    // Go: session2, err := concurrency.NewSession(cli)
    let grant2 = client.lease_grant(args.ttl, None).await;
    let grant2 = grant2.context("grant session 2's lease")?;
    leases.push(grant2.id());
    let session2 = Session::start(client, grant2.id(), grant2.ttl()).await?;
    let (lease1, lease2, ttl) = (session1.lease_id(), session2.lease_id(), session1.ttl());
    println!("session 1 has lease {lease1:016x}, session 2 has lease {lease2:016x} (ttl {ttl}s, renewed every {:.1}s)", ttl as f64 / 3.0);

    // 1. Go: myMu1 := concurrency.NewMutex(session1, "/lock"); myMu1.Lock(ctx). A mutex is a name and a
    //    lease. etcd puts `<name>/<lease in hex>` on the lease and answers once it is the oldest key under
    //    `<name>/`; the key's create revision, the fencing token, is read back (src/lib.rs).
    let options = Some(LockOptions::new().with_lease(lease1));
    let locked = demo::or_say_who_holds(client.clone(), name, client.lock(name, options)).await?;
    let held1 = lock::fencing_token(client, name, lease1, locked).await?;
    let held1 = held1.context("session 1's key was deleted as soon as it was granted")?;
    let (key1, token1) = (&held1.key, held1.create_revision);
    println!("1. session 1 acquired {name}: its key {key1} was created at revision {token1}");
    println!("   (a lock key is {name}/ and the lease ID in hex, which etcd writes without the leading zeros etcdctl shows)");

    // 2. Go: myMu2 := concurrency.NewMutex(session2, "/lock"); go func() { myMu2.Lock(ctx) ... }(). The
    //    call blocks while session 1 holds the lock; its key in the queue shows that it waits (demo.rs).
    let (mut client2, name2) = (client.clone(), name.to_string());
    let options = Some(LockOptions::new().with_lease(lease2));
    let waiting = tokio::spawn(async move { client2.lock(name2, options).await });
    let (queued2, holder) = demo::queued(client, name, lease2).await?;
    let (key2, token2) = (&queued2.key, queued2.create_revision);
    println!("2. session 2 is waiting for {name}: its key {key2} (revision {token2}) is queued behind {} \
        (revision {})", holder.key, holder.create_revision);

    // 3. Go: myMu1.Unlock(ctx). etcd deletes session 1's key: session 2's is now the oldest.
    let unlocked = client.unlock(key1.as_str()).await;
    unlocked.with_context(|| format!("unlock {key1}"))?;
    println!("3. session 1 released {name}: {key1} is deleted");
    // 4. Go: <-m2Chan. Session 2's lock call returns; its token is the create revision from step 2.
    demo::granted(waiting, name, &queued2).await?;
    println!(
        "4. session 2 acquired {name}: its key {key2} keeps revision {token2} from when it queued"
    );

    println!("-- beyond the article --");
    fencing(client, &held1, &queued2, &args.protected_key).await?;
    let unlocked = client.unlock(key2.as_str()).await;
    unlocked.with_context(|| format!("unlock {key2}"))?;
    println!("   session 2 released {name}");
    lock_without_a_lease(client, name).await
}

/// 5. Fencing: a holder's create revision is its token. A late write from session 1 (frozen past its TTL,
///    say) carries an old token, and etcd refuses it in the write's transaction: `put_if_holder` (lib.rs).
async fn fencing(client: &mut Client, old: &LockKey, new: &LockKey, key: &str) -> Result<()> {
    let current = lock::put_if_holder(client, new, key, "from session 2").await?;
    let stale = lock::put_if_holder(client, old, key, "from session 1").await?;
    let said = |write: Option<i64>| write.map_or("rejected", |_| "accepted");
    println!("5. fenced writes to {key}: session 2 (token {}) was {}, session 1's late one (token {}) was {}",
        new.create_revision, said(current), old.create_revision, said(stale));
    demo::delete_if_unchanged(client, key, current).await // only what this run wrote
}

/// 6. The pitfall: a lock without a lease works, which is the trap: etcd grants it a 60 s lease that
///    nobody renews, so the lock vanishes a minute later, finished or not. Its key names that lease.
async fn lock_without_a_lease(client: &mut Client, name: &str) -> Result<()> {
    let orphan = client.lock(name, None).await;
    let orphan = orphan.with_context(|| format!("lock {name} without a lease"))?;
    let (key, lease) = demo::key_and_lease(client, &orphan).await?;
    let left = client.lease_time_to_live(lease, None).await;
    let left = left.with_context(|| format!("ask etcd about lease {lease:016x}"))?;
    println!("6. pitfall: locked {name} without a lease: etcd attached its own lease {lease:016x} (ttl {}s) \
        that nobody renews, so this lock vanishes in {}s even if its holder is still busy; always lock with \
        a kept-alive session", left.granted_ttl(), left.ttl());
    // Revoke that lease rather than only unlocking: unlocking deletes the key, but the lease would linger.
    let revoked = client.lease_revoke(lease).await;
    revoked.with_context(|| format!("revoke lease {lease:016x}"))?;
    println!("   revoked lease {lease:016x}, which also deleted {key}");
    Ok(())
}
