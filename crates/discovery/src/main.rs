//! # discovery: service registration and discovery
//!
//! The use of etcd the article's series is about: instances of a service register themselves, and their
//! clients find them, and learn at once when one comes or goes.
//!
//! - An instance writes the key `<prefix>/<service>/<id>` (`/services/api/a`) with its address as the
//!   value, attached to a lease it keeps alive. It writes it only if the key is free, in one transaction,
//!   so two instances that picked the same ID cannot overwrite each other. Ctrl-C or SIGTERM revoke the
//!   lease, which deletes the key at once; if the instance is killed, the renewals stop and etcd deletes
//!   the key by itself when the TTL runs out.
//! - A client reads every key under `<prefix>/<service>/` with one GET, then watches that prefix from the
//!   read's revision + 1, so that no registration made between the read and the watch is missed, and
//!   prints the whole set after every change. When etcd restarts, it watches again from the revision after
//!   the last change it saw.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p discovery                                              # the demo, in one process
//! cargo run -p discovery -- watch --service api                       # terminal 1: the client's view
//! cargo run -p discovery -- register --service api --id a --addr 127.0.0.1:8001   # terminal 2
//! cargo run -p discovery -- register --service api --id b --addr 127.0.0.1:8002   # terminal 3
//! RUST_LOG=debug cargo run -p discovery -- register --service api --id a --addr 127.0.0.1:8001
//! ```
//!
//! Try next: Ctrl-C one `register` and see the watcher drop it at once; `kill -9` the other and see it
//! dropped about `--ttl` seconds later; start a second `--id a` while the first runs, and see it refused.
//! In a service, `register` and `InstanceWatch` in `src/lib.rs` pack the same steps.

mod cli;
mod register;
mod watcher;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cli::Command;
use discovery::{InstanceWatch, Registered, Registration};
use etcd_client::{Client, GetOptions};
use recipes::errors::one_line;
use recipes::shutdown::Shutdown;
use tokio::time::Instant;

/// The service the demo registers, and its instances.
const DEMO_SERVICE: &str = "demo";
const DEMO_INSTANCES: [(&str, &str); 2] = [("a", "127.0.0.1:8001"), ("b", "127.0.0.1:8002")];
/// The TTL of the demo's leases: short, so that the entries of a demo killed halfway go quickly.
const DEMO_TTL: i64 = 5;
/// How long the demo waits for something etcd should do at once (report a change to the watcher).
const DEMO_TIMEOUT: Duration = Duration::from_secs(10);

// The demo runs two lease renewals in background tasks while the main task registers and watches, and
// the subcommands wait on one stream at a time: the single-threaded runtime runs all of it.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse_anywhere()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    // Listen for Ctrl-C / SIGTERM before anything can block, so a signal always leads to a clean exit.
    let mut shutdown = Shutdown::listen()?;

    // 0. Connect. Underneath, `etcd_connect::connect` calls `Client::connect(endpoints, options)` and then
    //    asks the server for its `status()` within --dial-timeout, because `Client::connect` is lazy: it
    //    succeeds even when nothing listens (see crates/etcd-connect/src/lib.rs). Ctrl-C stops it at once:
    //    nothing is registered yet.
    let client = tokio::select! {
        client = etcd_connect::connect(&args.connect) => client?,
        signal = shutdown.recv() => {
            println!("{signal}: stopped before connecting; nothing was registered");
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // `--prefix /services/` and `--prefix /services` mean the same: keys are `<prefix>/<service>/<id>`.
    let prefix = args.prefix.trim_end_matches('/');
    match &args.command {
        None => demo(client, &args, prefix, &mut shutdown).await,
        Some(Command::Register(flags)) => {
            register::register(client, &args, flags, prefix, &mut shutdown).await
        }
        Some(Command::Watch(flags)) => {
            watcher::watch(client, &args, flags, prefix, &mut shutdown).await
        }
    }
}

/// `instances of api: [a=127.0.0.1:8001, b=127.0.0.1:8002]`: the set, sorted by ID (a `BTreeMap` is).
fn instances_line(service: &str, instances: &BTreeMap<String, String>) -> String {
    let shown: Vec<String> = instances
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    format!("instances of {service}: [{}]", shown.join(", "))
}

// =========================================================================================================
// The demo: two instances and a watcher in one process.
// =========================================================================================================

/// Registers the instances a and b of the service `demo`, each on a lease of its own (two processes would
/// have one each), while a watcher prints the set after each change; then deregisters a, then b.
///
/// It uses the packaged forms of the two subcommands (`src/register.rs`, `src/watcher.rs`), from
/// `src/lib.rs`, which is what a service would copy: `discovery::register` makes the calls of `register`'s
/// steps 1 to 3 and renews in a background task; `InstanceWatch` makes the calls of `watch`'s steps 1 to 4.
async fn demo(
    client: Client,
    args: &cli::Args,
    prefix: &str,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let dir = format!("{prefix}/{DEMO_SERVICE}/");
    // Every instance registered so far: whatever happens below, each is deregistered on the way out.
    let mut registered = Vec::new();
    let steps = tokio::select! {
        result = demo_steps(&client, args, &dir, &mut registered) => result,
        signal = shutdown.recv() => {
            println!("{signal}: stopping the demo early");
            Ok(())
        }
    };
    // Deregister what is still registered (after Ctrl-C or a failed step): revoking a lease deletes its
    // key. All of these calls together get one --dial-timeout, so stopping never hangs on a silent etcd.
    let until = Instant::now() + args.connect.dial_timeout;
    let mut cleanup = Ok(());
    for registration in registered.drain(..) {
        let key = registration.key().to_string();
        match registration
            .deregister(&client, until - Instant::now())
            .await
        {
            Ok(()) => println!("   deregistered {key} on the way out"),
            Err(e) => cleanup = Err(e),
        }
    }
    steps?;
    cleanup
}

async fn demo_steps(
    client: &Client,
    args: &cli::Args,
    dir: &str,
    registered: &mut Vec<Registration>,
) -> Result<()> {
    let timeout = args.connect.dial_timeout;
    let retrying = |attempt: u32, error: &anyhow::Error, pause: Duration| {
        println!(
            "   watcher: no answer from etcd (attempt {attempt}: {}); trying again in {:.1}s",
            one_line(error),
            pause.as_secs_f64()
        )
    };

    // The watcher prints every instance under `dir`, and the demo deregisters what it registered there.
    // A learner's own instances would show up in its lines, so refuse a directory that holds keys.
    let existing = client
        .clone()
        .get(
            dir,
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(3),
            ),
        )
        .await
        .with_context(|| format!("check that {dir} is empty"))?;
    if existing.count() > 0 {
        let keys: Vec<_> = existing
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()))
            .collect();
        bail!(
            "{dir} already holds {} key(s) ({}{}), which this demo did not write; choose another --prefix \
             (or, if they are left from a demo killed less than {DEMO_TTL}s ago, wait for their leases to \
             run out)",
            existing.count(),
            keys.join(", "),
            if existing.count() > keys.len() as i64 { ", ..." } else { "" }
        );
    }

    // 1. The watcher's first call reads the set with one GET (empty so far) and opens a watch from that
    //    read's revision + 1; every later call returns the set after the next change.
    let mut watcher = InstanceWatch::new(dir);
    let set = tokio::time::timeout(DEMO_TIMEOUT, watcher.changed(client, timeout, retrying))
        .await
        .context("the watcher did not start in time")??;
    let line = instances_line(DEMO_SERVICE, set);
    let from = watcher.next_revision().unwrap_or(0);
    println!(
        "1. watcher: read {dir} at revision {}, and watches it from revision {from}",
        from - 1
    );
    println!("   watcher: {line}");

    // 2, 3. Register a, then b: each on its own lease, renewed in the background, written only if the key
    //       is free. After each, the watcher reports the new set.
    for (step, (id, addr)) in (2..).zip(DEMO_INSTANCES) {
        let key = format!("{dir}{id}");
        let registration = match discovery::register(client, &key, addr, DEMO_TTL).await? {
            Registered::Now(registration) => registration,
            Registered::Taken(holder) => bail!(
                "{key} was taken by {} while the demo ran; run it again with another --prefix",
                holder.addr
            ),
        };
        println!(
            "{step}. registered {id} = {addr} as {key} on lease {:016x} (ttl {}s, renewed every {:.1}s)",
            registration.lease_id(),
            registration.ttl(),
            registration.ttl() as f64 / 3.0
        );
        registered.push(registration);
        let set = tokio::time::timeout(DEMO_TIMEOUT, watcher.changed(client, timeout, retrying))
            .await
            .with_context(|| format!("the watcher did not see {id} within {DEMO_TIMEOUT:?}"))??;
        println!("   watcher: {}", instances_line(DEMO_SERVICE, set));
    }

    // 4. A second instance that picked the ID `a` is refused: the key exists, so the transaction writes
    //    nothing and reads the holder instead. Nothing changed, so the watcher has nothing to report.
    let key_a = format!("{dir}a");
    match discovery::register(client, &key_a, "127.0.0.1:8009", DEMO_TTL).await? {
        Registered::Taken(holder) => println!(
            "4. a second a at 127.0.0.1:8009 was refused: {} is held by {} on lease {:016x}, and stays as it was",
            holder.key, holder.addr, holder.lease
        ),
        Registered::Now(registration) => {
            registered.push(registration);
            bail!("a second registration of {key_a} was accepted: the put-if-absent transaction failed");
        }
    }

    // 5, 6. Deregister a, then b: revoking a lease deletes the keys attached to it, at once, and the
    //       watcher sees each DELETE. (A killed instance's key would go only when its TTL runs out.)
    for (step, (id, _)) in (5..).zip(DEMO_INSTANCES) {
        let registration = registered.remove(0);
        let lease = registration.lease_id();
        let key = registration.key().to_string();
        registration.deregister(client, timeout).await?;
        println!(
            "{step}. deregistered {id}: revoked lease {lease:016x}, so etcd deleted {key} at once"
        );
        let set = tokio::time::timeout(DEMO_TIMEOUT, watcher.changed(client, timeout, retrying))
            .await
            .with_context(|| {
                format!("the watcher did not see {id} go within {DEMO_TIMEOUT:?}")
            })??;
        println!("   watcher: {}", instances_line(DEMO_SERVICE, set));
    }

    // Say what is left, read back from etcd rather than assumed.
    let left = client
        .clone()
        .get(dir, Some(GetOptions::new().with_prefix().with_count_only()))
        .await
        .with_context(|| format!("count the keys under {dir}"))?;
    println!(
        "done: {} key(s) left under {dir}, and both leases are revoked",
        left.count()
    );
    Ok(())
}
