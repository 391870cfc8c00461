//! # keepalive: a key that lives exactly as long as its program
//!
//! The article's KEEPALIVE program: grant a lease, PUT `/name` on it, then keep the lease alive and print
//! the TTL etcd reports after each renewal. The key stays while the program runs, however long that is.
//!
//! **Why leases matter: how the program ends decides when the key goes.**
//!
//! - Ctrl-C or SIGTERM: the program revokes the lease on its way out, and etcd deletes the key at once.
//! - SIGKILL, a crash, a lost network, a dead machine: nobody revokes anything, but nobody renews either,
//!   so etcd deletes the key by itself within TTL + 1 seconds. This is what service registration and
//!   locks rely on: a key that says "I am alive" cannot outlive its owner by more than the TTL.
//!
//! **Renewing is the caller's job in Rust.** Go's `client.KeepAlive(ctx, id)` returns a channel and renews
//! in the background by itself. etcd-client's `lease_keep_alive(id)` returns two ends of a stream instead:
//! a `LeaseKeeper`, whose `keep_alive()` sends ONE renewal, and a `LeaseKeepAliveStream` that yields ONE
//! answer per renewal. Nothing renews unless the program sends it. So this program:
//!
//! - renews every TTL/3, so a renewal can be late or lost and the lease still lives;
//! - treats an answer with TTL 0 as "the lease is gone" (it expired, or someone ran `etcdctl lease revoke`):
//!   renewing cannot bring it back, the key is already deleted, so it exits with an error;
//! - re-opens the stream when it breaks (etcd restarted, connection reset), as long as the lease is still
//!   inside its TTL (last confirmed renewal + TTL); past that it fails clearly.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p keepalive                   # 5 s lease, renewed until Ctrl-C
//! cargo run -p keepalive -- --ttl 10 --key /svc/a --value up
//! cargo run -p keepalive -- --count 3      # stop (and revoke) after 3 renewals
//! etcdctl get /name                        # in another terminal: still there after many TTLs
//! ```
//!
//! Try next: run it, then `kill -9 <pid>` and `watch -n 0.5 etcdctl get /name` to see the key vanish after
//! the TTL; or `etcdctl lease revoke <id>` to see the program notice that its lease is gone.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::builder::NonEmptyStringValueParser;
use clap::Parser;
use etcd_client::Client;
use etcd_connect::{ConnectArgs, Shutdown};
use keepalive::{lease_id_hex, KeptLease, Renewal, MAX_TTL_SECS};

#[derive(Debug, Parser)]
#[command(about = "Put a key on a lease and keep the lease alive until stopped")]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Lease time-to-live in whole seconds (short by default, so a killed program's key goes quickly).
    // Negative numbers are read as values, so `--ttl -5` says "not in range" rather than "unexpected argument".
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 5,
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

    /// Stop after this many keep-alive answers, revoking the lease as on Ctrl-C. Default: run until stopped.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    count: Option<u32>,
}

// One lease and one signal handler, handled in turn by a `select!`: the single-threaded runtime is enough.
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

    // 1. Grant a lease: a countdown on the server, as in the `lease` topic.
    let (lease_id, ttl) = keepalive::grant(&mut client, args.ttl).await?;
    let id = lease_id_hex(lease_id);
    println!("1. granted lease {id} with a TTL of {ttl}s");

    // 2. Attach the key. Left alone, it would be deleted after the TTL.
    let revision = keepalive::put_with_lease(&mut client, key, &args.value, lease_id).await?;
    println!(
        "2. put {key} = {} on lease {id} (revision {revision})",
        args.value
    );

    // 3. Open the keep-alive stream. Opening it already renews the lease once.
    let mut lease = KeptLease::start(&mut client, lease_id, ttl).await?;
    println!(
        "3. keep-alive stream open; renewing every {:.1?} (a third of the TTL); Ctrl-C revokes the lease",
        keepalive::renew_every(ttl)
    );

    // 4. Renew until stopped. Each answer resets the lease's countdown to the full TTL.
    let mut answers = 0;
    loop {
        let renewal = tokio::select! {
            signal = shutdown.recv() => return stop(&mut client, &args, lease_id, signal).await,
            renewal = lease.renew_when_due() => renewal,
        };
        match renewal {
            Ok(Renewal::Alive { ttl }) => {
                answers += 1;
                println!("   ttl: {ttl} (renewal {answers}: lease {id} has {ttl}s again)");
                if args.count == Some(answers) {
                    return stop(&mut client, &args, lease_id, "--count reached").await;
                }
            }
            Ok(Renewal::Gone) => bail!(
                "lease {id} is gone: etcd answered a renewal with TTL 0 (it expired or was revoked \
                 elsewhere), and {key} was deleted with it"
            ),
            Err(broken) => {
                println!("   keep-alive stream broke ({broken:#}); re-opening it before the TTL runs out");
                tokio::select! {
                    signal = shutdown.recv() => return stop(&mut client, &args, lease_id, signal).await,
                    reopened = lease.reopen(&mut client) => reopened?,
                }
                println!("   keep-alive stream re-opened; lease {id} renewed");
            }
        }
    }
}

/// The clean way out: revoke the lease so the key goes now, instead of lingering for up to a TTL.
async fn stop(client: &mut Client, args: &Args, lease_id: i64, why: &str) -> Result<()> {
    keepalive::revoke(client, lease_id, args.connect.dial_timeout).await?;
    println!(
        "{why}: revoked lease {}, so etcd deleted {} at once",
        lease_id_hex(lease_id),
        args.key
    );
    Ok(())
}
