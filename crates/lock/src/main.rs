//! # lock: a distributed lock
//!
//! The article's lock program: two sessions want the lock `/lock`. Session 1 gets it, session 2 waits,
//! session 1 lets go, session 2 gets it. Then it goes further: why the lock's revision is a *fencing
//! token*, and what goes wrong when a lock is taken without a lease of your own.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p lock                      # the demo: two sessions in one process
//! cargo run -p lock -- --hold 5          # a contender: wait for /lock, hold it 5 s, release it
//! cargo run -p lock -- --hold 5 --try    # give up at once (exit code 2) if /lock is taken
//! RUST_LOG=debug cargo run -p lock -- --hold 5   # also shows every lease renewal
//! ```
//!
//! A *session* is a lease kept alive in the background. The lock key is attached to it, so when the
//! holder dies the lease expires (after `--ttl` seconds) and the lock comes free on its own. Ctrl-C or
//! SIGTERM releases at once.
//!
//! Try next: start `--hold 10` in three terminals and watch them take turns; `etcdctl get --prefix /lock/`
//! in a fourth shows the queue. `kill -9` the holder and time how long the next one waits. Then read
//! `put_if_holder` in `src/lib.rs` to see how a write stays safe when a holder stalls.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::builder::NonEmptyStringValueParser;
use clap::Parser;
use etcd_client::Client;
use etcd_connect::{parse_seconds, ConnectArgs, Shutdown};
use lock::{unix_millis, Session, TryOutcome};
use log::debug;

/// Where the demo's fenced write goes (deleted at the end).
const PROTECTED_KEY: &str = "/demo/protected-config";

/// How long the demo waits for something etcd should do at once (queue a key, hand over the lock).
const DEMO_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(about = "A distributed lock on etcd: the two-session demo, or a contender with --hold")]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Name of the lock. Contenders' keys go under `<name>/`.
    #[arg(long, default_value = "/lock", value_parser = NonEmptyStringValueParser::new())]
    name: String,

    /// TTL of each session's lease, in seconds: how long a crashed holder keeps the lock.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..=86_400))]
    ttl: i64,

    /// Contender mode: acquire the lock, hold it SECS (decimals allowed), release it.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    hold: Option<Duration>,

    /// With --hold: if the lock is taken, give up at once with exit code 2 instead of waiting.
    #[arg(long = "try", requires = "hold")]
    try_lock: bool,
}

/// How a run ended, when it did not fail.
enum Outcome {
    Done,
    /// `--try` found the lock taken.
    Taken,
}

/// Exit code of `--try` when the lock is taken, so scripts can tell "busy" from "broken".
const EXIT_TAKEN: u8 = 2;

// A few sequential calls plus two small background tasks (the lease renewals, session 2's lock call):
// the single-threaded runtime runs them all while the main task awaits etcd.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    let args = match Args::try_parse() {
        Ok(args) => args,
        // clap's own exit code for bad flags is 2, which here means "lock taken"; use 1 instead.
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::FAILURE;
        }
        // --help and --version.
        Err(e) => e.exit(),
    };
    match run(args).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Taken) => ExitCode::from(EXIT_TAKEN),
        Err(e) => etcd_connect::report(Err(e)),
    }
}

async fn run(args: Args) -> Result<Outcome> {
    // Listen for Ctrl-C / SIGTERM before anything can block, so a signal always leads to a clean release.
    let mut shutdown = Shutdown::listen()?;

    // 0. Connect. This fails within --dial-timeout, with a hint, when no etcd answers.
    let client = etcd_connect::connect(&args.connect).await?;
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    match args.hold {
        None => demo(client, &args, &mut shutdown).await,
        Some(hold) => contend(client, &args, hold, &mut shutdown).await,
    }
}

/// The article's program: two sessions, one lock.
async fn demo(mut client: Client, args: &Args, shutdown: &mut Shutdown) -> Result<Outcome> {
    // Two sessions = two leases, each renewed in the background: two processes would have one each.
    let session1 = Session::start(&client, args.ttl).await?;
    let session2 = match Session::start(&client, args.ttl).await {
        Ok(session) => session,
        Err(e) => {
            let _ = session1.close().await;
            return Err(e);
        }
    };
    println!(
        "session 1 has lease {:x}, session 2 has lease {:x} (ttl {}s, renewed every {:.1}s)",
        session1.lease_id(),
        session2.lease_id(),
        session1.ttl(),
        session1.ttl() as f64 / 3.0
    );

    let steps = tokio::select! {
        result = demo_steps(&mut client, &args.name, &session1, &session2) => result,
        signal = shutdown.recv() => {
            println!("{signal}: stopping the demo early");
            Ok(())
        }
    };
    // Whatever happened, end both sessions: revoking a lease deletes its lock key, so nothing stays locked.
    let leases = (session1.lease_id(), session2.lease_id());
    let closed = (session1.close().await, session2.close().await);
    steps?;
    closed.0?;
    closed.1?;
    println!(
        "done: leases {:x} and {:x} revoked, nothing is left under {}/",
        leases.0, leases.1, args.name
    );
    Ok(Outcome::Done)
}

async fn demo_steps(
    client: &mut Client,
    name: &str,
    session1: &Session,
    session2: &Session,
) -> Result<()> {
    // 1. Session 1 asks for the lock. Nobody holds it, so etcd grants it at once.
    let held1 = lock::acquire(client, name, session1.lease_id()).await?;
    println!(
        "1. session 1 acquired {name}: its key {} was created at revision {}",
        held1.key, held1.revision
    );

    // 2. Session 2 asks too. Its lock call blocks until session 1 lets go, so it runs in a task of its
    //    own, like the article's goroutine; awaiting the task's handle plays the part of its channel.
    let mut client2 = client.clone();
    let (name2, lease2) = (name.to_string(), session2.lease_id());
    let waiting = tokio::spawn(async move { lock::acquire(&mut client2, &name2, lease2).await });
    //    Say "waiting" only once etcd has really queued session 2: its key exists under the prefix.
    let key2 = lock::lock_key(name, session2.lease_id());
    let queue = lock::wait_until_queued(client, name, &key2, DEMO_LIMIT).await?;
    let (holder, queued) = match queue.as_slice() {
        [holder, queued, ..] => (holder, queued),
        _ => bail!("expected session 1 and session 2 in the queue, found {queue:?}"),
    };
    println!(
        "2. session 2 is waiting for {name}: its key {} (revision {}) is queued behind {} (revision {})",
        queued.key, queued.revision, holder.key, holder.revision
    );

    // 3. Session 1 unlocks: its key is deleted, and etcd wakes the next key in line.
    lock::release(client, &held1).await?;
    println!("3. session 1 released {name}: {} is deleted", held1.key);

    // 4. Session 2's lock call now returns.
    let held2 = tokio::time::timeout(DEMO_LIMIT, waiting)
        .await
        .with_context(|| format!("session 2 did not get {name} within {DEMO_LIMIT:?}"))?
        .context("session 2's lock task failed")??;
    println!(
        "4. session 2 acquired {name}: its key {} has revision {}",
        held2.key, held2.revision
    );

    println!("-- beyond the article --");

    // 5. Fencing: a holder's revision is its token. A late write from session 1 (think: it was frozen by
    //    a GC pause while its lock expired) carries an old token and etcd refuses it in the same
    //    transaction as the write.
    let current = lock::put_if_holder(client, &held2, PROTECTED_KEY, "from session 2").await?;
    let stale = lock::put_if_holder(client, &held1, PROTECTED_KEY, "from session 1").await?;
    println!(
        "5. fenced writes to {PROTECTED_KEY}: session 2 (token {}) was {}, session 1's late one (token {}) was {}",
        held2.revision,
        accepted(current),
        held1.revision,
        accepted(stale)
    );
    client
        .delete(PROTECTED_KEY, None)
        .await
        .with_context(|| format!("delete {PROTECTED_KEY}"))?;
    lock::release(client, &held2).await?;
    println!("   session 2 released {name}");

    // 6. The pitfall: lock without a lease. etcd then makes a lease itself and nobody renews it, so the
    //    lock silently disappears while its holder may still be working.
    let orphan = lock::lock_without_lease(client, name).await?;
    let lease = lock::lease_behind(client, &orphan.key).await?;
    println!(
        "6. pitfall: locked {name} without a lease: etcd attached its own lease {:x} (ttl {}s) that nobody \
renews, so this lock vanishes in {}s even if its holder is still busy; always lock with a kept-alive session",
        lease.id, lease.granted_ttl, lease.remaining_ttl
    );
    // Revoke that lease rather than only unlocking: otherwise it would linger for a minute.
    client
        .lease_revoke(lease.id)
        .await
        .with_context(|| format!("revoke lease {:x}", lease.id))?;
    println!(
        "   revoked lease {:x}, which also deleted {}",
        lease.id, orphan.key
    );
    Ok(())
}

fn accepted(written: bool) -> &'static str {
    if written {
        "accepted"
    } else {
        "rejected"
    }
}

/// Contender mode: one session, acquire, hold, release. Run it in several terminals.
async fn contend(
    mut client: Client,
    args: &Args,
    hold: Duration,
    shutdown: &mut Shutdown,
) -> Result<Outcome> {
    let mut session = Session::start(&client, args.ttl).await?;
    let outcome = hold_the_lock(&mut client, args, hold, &mut session, shutdown).await;

    // Always end the session: this also removes our key if we are still queued or holding.
    let lease = session.lease_id();
    match session.close().await {
        Ok(()) => println!("session ended: revoked lease {lease:x}"),
        // After a failure (say, the lease already expired) the first error is the one to report.
        Err(e) if outcome.is_err() => debug!("could not revoke lease {lease:x}: {e:#}"),
        Err(e) => return Err(e),
    }
    outcome
}

async fn hold_the_lock(
    client: &mut Client,
    args: &Args,
    hold: Duration,
    session: &mut Session,
    shutdown: &mut Shutdown,
) -> Result<Outcome> {
    let name = &args.name;
    let lease = session.lease_id();

    // 1. Get the lock: either once (--try) or by queueing for it.
    let held = if args.try_lock {
        println!("trying {name} once (lease {lease:x}) ...");
        match lock::try_acquire(client, name, lease).await? {
            TryOutcome::Acquired(held) => held,
            TryOutcome::Taken { holder } => {
                eprintln!(
                    "{name} is taken: held by {} (rev={}); --try gives up instead of waiting",
                    holder.key, holder.revision
                );
                return Ok(Outcome::Taken);
            }
        }
    } else {
        println!(
            "waiting for {name} ... (lease {lease:x}, ttl {}s)",
            session.ttl()
        );
        tokio::select! {
            held = lock::acquire(client, name, lease) => held?,
            signal = shutdown.recv() => {
                println!("{signal}: stopped waiting for {name}");
                return Ok(Outcome::Done);
            }
            why = session.lost() => bail!("lost the session while waiting for {name}: {why}"),
        }
    };
    // rev= is this holder's fencing token: pass it along with every write the lock protects.
    println!(
        "acquired {} rev={} at={}",
        held.key,
        held.revision,
        unix_millis()
    );

    // 2. Hold it: do the protected work here. Stop early on a signal, or if the session is lost: then
    //    someone else may already hold the lock, and our token is stale.
    tokio::select! {
        () = tokio::time::sleep(hold) => {}
        signal = shutdown.recv() => println!("{signal}: releasing {name} early"),
        why = session.lost() => bail!(
            "lost {name} while holding it ({why}); another process may hold it now, so token {} is stale",
            held.revision
        ),
    }

    // 3. Release. The time is taken before unlocking: the work is over before the next holder can start.
    let released_at = unix_millis();
    lock::release(client, &held).await?;
    println!("released {} at={released_at}", held.key);
    Ok(Outcome::Done)
}
