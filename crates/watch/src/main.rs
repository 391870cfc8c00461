//! # watch: see every change to a key as it happens
//!
//! The article's WATCH program: connect, watch the key `name`, print each change (PUT or DELETE) as it
//! comes. Then it does what a watcher in a real service must do and the article leaves out:
//!
//! - watch every key under a prefix (`--prefix`), or replay history from a past revision (`--rev`);
//! - survive a lost connection or an etcd restart: reconnect with growing pauses, and resume from the
//!   revision after the last change printed, so no change is lost or printed twice;
//! - cope with a compacted history: when the revision to resume from is gone, read the current state and
//!   continue from there;
//! - stop cleanly on Ctrl-C or SIGTERM, canceling the watch on the server.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`), and write from another terminal:
//!
//! ```text
//! cargo run -p watch                          # then: etcdctl put name hello ; etcdctl del name
//! cargo run -p watch -- --key /app/ --prefix  # then: etcdctl put /app/color red
//! cargo run -p watch -- --rev 1 --count 5     # the first 5 changes to `name` since etcd started
//! RUST_LOG=debug cargo run -p watch
//! ```
//!
//! Try next: while it runs, restart etcd (`scripts/etcd.sh down`, then `up`) and see it reconnect and resume;
//! `etcdctl compact <rev>` then `--rev 1` to see the compaction path. In your own code,
//! `WatchOptions::with_prev_key` also hands each event the value it replaced.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::builder::NonEmptyStringValueParser;
use clap::Parser;
use etcd_client::Client;
use etcd_connect::{ConnectArgs, Shutdown};
use watch::{Next, Target, Watch};

#[derive(Debug, Parser)]
#[command(about = "Print every change to a key (or prefix) as it happens, surviving etcd restarts")]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Key to watch.
    #[arg(long, default_value = "name", value_parser = NonEmptyStringValueParser::new())]
    key: String,

    /// Watch every key that starts with --key.
    #[arg(long)]
    prefix: bool,

    /// Start from this past store revision (1 or more) and replay the history since then.
    #[arg(long, value_name = "R", allow_negative_numbers = true, value_parser = watch::parse_revision)]
    rev: Option<i64>,

    /// Exit after printing this many changes (1 or more).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = watch::parse_count)]
    count: Option<u64>,
}

/// How long etcd gets to confirm that it canceled the watch when we stop.
const CANCEL_LIMIT: Duration = Duration::from_secs(2);

// One watch, read in one loop: the single-threaded runtime is enough, and `select!` between the watch and
// the shutdown signal needs no extra task.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    etcd_connect::report(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<()> {
    // Listen for Ctrl-C / SIGTERM before anything else, so a signal during setup is not lost.
    let mut shutdown = Shutdown::listen()?;
    let target = Target {
        key: args.key.clone(),
        prefix: args.prefix,
    };
    // Every network step below is bounded by this, so a dead or stuck etcd cannot hang the watcher.
    let limit = args.connect.dial_timeout;

    // 0. Connect. This fails within --dial-timeout, with a hint, when no etcd answers.
    let mut client = etcd_connect::connect(&args.connect).await?;
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // 1. Open the watch, as in the article, and wait for etcd to confirm it. Only then is it safe to say
    //    "watching": a write made after this line is guaranteed to be reported.
    let mut watch = tokio::time::timeout(limit, watch::open(&mut client, &target, args.rev))
        .await
        .with_context(|| format!("etcd did not confirm the watch within {limit:?}"))??;
    let replay = if args.rev.is_some() {
        " (replaying history first)"
    } else {
        ""
    };
    let until = match args.count {
        Some(n) => format!("stopping after {n} change(s) or Ctrl-C"),
        None => "Ctrl-C to stop".into(),
    };
    println!(
        "watching {target} from revision {}{replay}; {until}",
        watch.start_revision
    );

    // The one number that makes resuming exact: the first revision we have not printed yet.
    let mut next_revision = watch.start_revision;
    let mut printed: u64 = 0;

    loop {
        // 2. Wait for the next change, or for Ctrl-C / SIGTERM (step 5), whichever comes first.
        let next = tokio::select! {
            signal = shutdown.recv() => return stop(watch, signal).await,
            next = watch.next() => next,
        };
        let lost = match next {
            Next::Changes(changes) => {
                for change in changes {
                    println!("{change}");
                    next_revision = change.revision() + 1;
                    printed += 1;
                    if Some(printed) == args.count {
                        println!("saw {printed} change(s), as asked by --count");
                        return stop(watch, "--count").await;
                    }
                }
                None
            }

            // 3. The revision we need is compacted away: the changes in between cannot be replayed. Say
            //    so, read the state they led to, and continue right after that read.
            Next::Compacted { compact_revision } => {
                println!(
                    "revision {next_revision} was compacted away (etcd keeps history from revision \
                     {compact_revision} on): the changes from {next_revision} to {} cannot be replayed",
                    compact_revision - 1
                );
                match catch_up(&mut client, &target, limit).await {
                    Ok((revision, fresh)) => {
                        next_revision = revision + 1;
                        watch = fresh;
                        println!("continuing from revision {next_revision}");
                        None
                    }
                    // etcd went away in the middle: handled like any lost connection.
                    Err(e) => Some(format!("{e:#}")),
                }
            }

            Next::Lost(why) => Some(why),
            Next::Refused(reason) => bail!("etcd canceled the watch on {target}: {reason}"),
        };

        // 4. The connection broke (etcd restarted, network dropped). etcd-client does not reconnect a watch
        //    by itself, so we do: a new connection, a new watch from `next_revision`. Changes made meanwhile
        //    are still in etcd's history and arrive first; none is repeated.
        if let Some(why) = lost {
            println!("lost the connection to etcd ({why}); reconnecting");
            let Some(back) = reconnect(&args.connect, &target, next_revision, &mut shutdown).await
            else {
                return Ok(());
            };
            (client, watch) = back;
            println!("reconnected: resumed from revision {next_revision}");
        }
    }
}

/// Step 3 in full: GET the current state (printed), then a new watch from just after that GET.
async fn catch_up(client: &mut Client, target: &Target, limit: Duration) -> Result<(i64, Watch)> {
    let (revision, entries) = tokio::time::timeout(limit, watch::current_state(client, target))
        .await
        .context("no answer to the GET")??;
    println!("current state of {target} at revision {revision} (read with GET):");
    if entries.is_empty() {
        let nothing = if target.prefix {
            "no keys under it"
        } else {
            "the key does not exist"
        };
        println!("   ({nothing})");
    }
    for entry in &entries {
        println!(
            "   {} = {} (last written at revision {})",
            entry.key, entry.value, entry.mod_revision
        );
    }
    let fresh = tokio::time::timeout(limit, watch::open(client, target, Some(revision + 1)))
        .await
        .context("etcd did not confirm the new watch")??;
    Ok((revision, fresh))
}

/// Step 4 in full: retry until a new connection and a watch from `from` are up. `None` when Ctrl-C or
/// SIGTERM arrives first (there is no watch to cancel then; the stop is reported here).
async fn reconnect(
    connect_args: &ConnectArgs,
    target: &Target,
    from: i64,
    shutdown: &mut Shutdown,
) -> Option<(Client, Watch)> {
    let limit = connect_args.dial_timeout;
    let mut attempt: u32 = 0;
    loop {
        // Pause before each try, longer each time (0.2 s doubling up to 5 s): an etcd that is restarting
        // needs a moment, and a crowd of watchers retrying in a tight loop would slow it down.
        let pause = watch::backoff(attempt);
        tokio::select! {
            signal = shutdown.recv() => return stopped_while_disconnected(signal),
            _ = tokio::time::sleep(pause) => {}
        }
        // A fresh client each time: it proves etcd answers before we rely on it. The whole attempt is
        // bounded, because a request on a connection to a vanished server can wait forever.
        let try_once = async {
            let mut client = etcd_connect::connect(connect_args).await?;
            let watch = watch::open(&mut client, target, Some(from)).await?;
            anyhow::Ok((client, watch))
        };
        let outcome = tokio::select! {
            signal = shutdown.recv() => return stopped_while_disconnected(signal),
            outcome = tokio::time::timeout(limit, try_once) => outcome,
        };
        match outcome {
            Ok(Ok(pair)) => return Some(pair),
            Ok(Err(e)) => log::debug!("reconnect attempt {} failed: {e:#}", attempt + 1),
            Err(_) => log::debug!(
                "reconnect attempt {} got no answer within {limit:?}",
                attempt + 1
            ),
        }
        println!(
            "   etcd is not back yet (attempt {}); trying again in {:.1}s",
            attempt + 1,
            watch::backoff(attempt + 1).as_secs_f64()
        );
        attempt = attempt.saturating_add(1);
    }
}

fn stopped_while_disconnected(signal: &str) -> Option<(Client, Watch)> {
    println!("stopped ({signal}) while reconnecting; no watch was open to cancel");
    None
}

/// Step 5: cancel the watch on the server, so etcd stops tracking it, then exit 0.
async fn stop(watch: Watch, why: &str) -> Result<()> {
    let id = watch.id;
    if watch.cancel(CANCEL_LIMIT).await {
        println!("stopped ({why}): watch {id} canceled on the server");
    } else {
        println!("stopped ({why}): etcd did not confirm the cancel; it drops the watch when we disconnect");
    }
    Ok(())
}
