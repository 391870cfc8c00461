//! # lease: a key with a time limit
//!
//! The article's LEASE program: grant a lease of 20 seconds, PUT `/name` attached to it, and exit,
//! claiming the key "will be gone in 20 seconds". This program then stays and shows it happen: it watches
//! the key, prints the lease's remaining TTL every few seconds, and prints `expired` when etcd deletes it.
//!
//! A lease is a countdown kept by the etcd server. Keys attached to it live exactly as long as it does:
//! when the TTL runs out (or the lease is revoked) etcd deletes all of them in one step, and watchers see
//! an ordinary DELETE. One lease can carry many keys, and a client can renew it (`cargo run -p keepalive`).
//!
//! **Not Redis SETNX.** The article compares a lease to `SETNX`, but they do different things. A lease is
//! an expiry time shared by keys, the counterpart of Redis `EXPIRE`/`SET ... EX`, and it never stops
//! another client from writing the key. `SETNX` means "put only if absent"; in etcd that is a transaction
//! whose condition is `create_revision(key) == 0` (the key does not exist yet), shown in a later topic.
//! A lock needs both: put-if-absent to take it, and a lease so it frees itself when its owner dies.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p lease                       # 20 s lease, watch /name until etcd deletes it
//! cargo run -p lease -- --ttl 5 --key /svc/a --value up
//! cargo run -p lease -- --no-wait          # exit right after the put, like the article's program
//! etcdctl get /name                        # while it runs: the key is there...
//! etcdctl lease timetolive <id> --keys     # ...on a lease counting down (<id> as printed)
//! ```
//!
//! Press Ctrl-C while it waits: it revokes the lease and the key disappears at once instead of at the end.
//!
//! Try next: `etcdctl lease revoke <id>` from another terminal while it waits, then `cargo run -p
//! keepalive`, which renews a lease so its key stays while the program lives.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::builder::NonEmptyStringValueParser;
use clap::Parser;
use etcd_connect::{ConnectArgs, Shutdown};
use lease::{lease_id_hex, MAX_TTL_SECS};

#[derive(Debug, Parser)]
#[command(about = "Put a key on a lease and watch etcd delete it when the lease runs out")]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Lease time-to-live in whole seconds.
    // Negative numbers are read as values, so `--ttl -5` says "not in range" rather than "unexpected argument".
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 20,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(1..=MAX_TTL_SECS)
    )]
    ttl: i64,

    /// Key put on the lease.
    #[arg(long, default_value = "/name", value_parser = NonEmptyStringValueParser::new())]
    key: String,

    /// Value written to --key.
    #[arg(long, default_value = "ferris")]
    value: String,

    /// Exit right after the put, as the article's program does; etcd still deletes the key on time.
    #[arg(long)]
    no_wait: bool,
}

// One lease, one watch, one timer, handled in turn by a `select!`: the single-threaded runtime is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    etcd_connect::report(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<()> {
    // Catch Ctrl-C and SIGTERM from the start, so a signal during setup still leads to a revoke below.
    let mut shutdown = Shutdown::listen()?;
    let mut client = etcd_connect::connect(&args.connect).await?;
    println!("connected to etcd at {}", args.connect.endpoints_shown());
    let key = &args.key;

    // 1. Grant a lease. Nothing is deleted yet: the lease is only a countdown on the server.
    let lease = lease::grant(&mut client, args.ttl).await?;
    let granted_at = Instant::now();
    let id = lease_id_hex(lease.id);
    println!("1. granted lease {id} with a TTL of {}s", lease.ttl);

    // 2. Attach the key to it. From now on the key lives exactly as long as the lease.
    let revision = lease::put_with_lease(&mut client, key, &args.value, lease.id).await?;
    println!(
        "2. put {key} = {} on lease {id} (revision {revision}); etcd deletes it when the lease ends",
        args.value
    );
    if args.no_wait {
        println!(
            "not waiting (--no-wait): {key} disappears in about {}s; see `etcdctl lease timetolive {id} --keys`",
            lease.ttl
        );
        return Ok(());
    }

    // 3. Watch the key from the revision after our put, so even a deletion that happens right now is seen.
    let mut watch = lease::watch_key_from(&mut client, key, revision + 1).await?;
    println!(
        "3. watching {key} from revision {}; Ctrl-C revokes the lease instead of waiting",
        revision + 1
    );

    // 4. Wait for etcd to delete the key, showing the countdown meanwhile (the first tick is immediate).
    let mut countdown = tokio::time::interval(lease::report_every(lease.ttl));
    loop {
        tokio::select! {
            deleted = lease::next_delete(&mut watch, lease.id) => {
                let revision = match deleted {
                    Ok(revision) => revision,
                    Err(e) => {
                        // The wait cannot end well any more: release the lease rather than leave it ticking.
                        let _ = lease::revoke(&mut client, lease.id, args.connect.dial_timeout).await;
                        return Err(e);
                    }
                };
                // Someone could also have deleted the key by hand: then the lease would still be alive.
                if let Some(status) = lease::time_to_live(&mut client, lease.id).await? {
                    lease::revoke(&mut client, lease.id, args.connect.dial_timeout).await?;
                    bail!(
                        "{key} was deleted by another client at revision {revision}, with {}s left on lease {id} (now revoked)",
                        status.remaining
                    );
                }
                println!(
                    "4. {key} expired after {:.1?}: etcd deleted it with lease {id} at revision {revision}",
                    granted_at.elapsed()
                );
                return Ok(());
            }
            _ = countdown.tick() => match lease::time_to_live(&mut client, lease.id).await? {
                Some(status) => println!(
                    "   lease {id}: {}s left of {}s, keys: {}",
                    status.remaining,
                    status.granted,
                    status.keys.join(", ")
                ),
                // The lease just ended; its delete event is on its way through the watch.
                None => log::debug!("lease {id} is gone; waiting for the delete event"),
            },
            signal = shutdown.recv() => {
                // Revoking deletes the key now; without it the key would linger until the TTL runs out.
                lease::revoke(&mut client, lease.id, args.connect.dial_timeout).await?;
                println!("{signal}: revoked lease {id}, so etcd deleted {key} at once");
                return Ok(());
            }
        }
    }
}
