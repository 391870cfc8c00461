//! # bench: how to get throughput out of etcd from Rust
//!
//! Four ways to drive etcd hard from one process, side by side (`four_ways.rs`): 1. one request at a
//! time, each waiting a round trip plus etcd's disk sync (throughput is 1 / latency); 2. 64 requests in
//! flight over one `Client`, one HTTP/2 connection, so that etcd batches their commits into one sync;
//! 3. the same over 8 connections, separate `Client::connect`s (a clone shares its connection); 4. 64 PUTs
//! in one transaction: one request, one Raft entry, one revision. The subcommands (`put.rs`, `range.rs`,
//! `txn_put.rs`, `lease_keepalive.rs`, `watch_latency.rs`) mirror etcd's `benchmark` tool, its flags and
//! its `Summary:` lines (`scripts/bench-compare.sh`); the worker loops and their calls are in `drive.rs`.
//!
//! This file is the run: parse the flags, connect, claim `--prefix` (it must hold no keys: the run deletes
//! it at the end and revokes its leases, also on Ctrl-C), run, clean up, report. Try `cargo run --release
//! -p bench -- put --clients 64 --conns 1 --total 20000` against `--conns 8`, and `--runtime multi`
//! against the default `current` (`runtime.rs`), with an etcd from `scripts/etcd.sh up`.

mod cleanup;
mod cli;
mod connections;
mod drive;
mod four_ways;
mod keys;
mod lease_keepalive;
mod plan;
mod put;
mod range;
mod report;
mod runtime;
mod txn_put;
mod watch_latency;

use std::process::ExitCode;

use anyhow::Result;
use etcd_client::Client;
use recipes::shutdown::{ExitBudget, Shutdown};

fn main() -> ExitCode {
    etcd_connect::init();
    // 1. Parse the flags (etcd's `benchmark` flags, before or after the subcommand), and check them
    //    against each other: a run that cannot work is refused in one line, before anything is sent.
    let plan = plan::Plan::check(cli::Args::parse_anywhere());
    // One thread unless --runtime multi: runtime.rs says why a load generator beside etcd wants that.
    let result = plan.and_then(|plan| runtime::build(plan.load().runtime)?.block_on(run(plan)));
    // 6. Report: an error as one line on stderr (`error: what failed: why`), and exit code 1.
    recipes::errors::report(result)
}

async fn run(plan: plan::Plan) -> Result<()> {
    // Signals first, so a Ctrl-C during setup is remembered and the run still cleans up.
    let mut shutdown = Shutdown::listen()?;
    let load = plan.load().clone();

    // 2. Connect. `etcd_connect::dial` probes the endpoints first (`Client::connect` alone is lazy) and
    //    bounds the call by --dial-timeout; `--conns K` opens K-1 more connections (connections.rs).
    let connecting = async {
        // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout})
        let client = etcd_connect::dial(&load.connect, |endpoints, options| {
            Client::connect(endpoints, Some(options))
        })
        .await?;
        connections::with_more(client, &load.connect, plan.connections()).await
    };
    let conns = match shutdown.unless_stopped(connecting).await {
        Ok(conns) => conns?,
        Err(signal) => {
            println!("{signal}: stopped before connecting");
            return Ok(());
        }
    };
    plan.say_connected();

    // 3. Claim the prefix: the run deletes it whole at the end, which is safe only if it holds no keys
    //    now. A prefix with keys is refused and left alone.
    let mut client = conns[0].clone();
    cleanup::claim_prefix(&mut client, &load.prefix).await?;
    let mut litter = plan.litter();

    // 4. Run the four ways or the subcommand: it prints its figures (etcd's `Summary:` for a subcommand),
    //    and on Ctrl-C or SIGTERM lets the requests in flight finish, then stops.
    let outcome = plan.run(&conns, &mut litter, &mut shutdown).await;

    // 5. Clean up, also after an error or a signal: delete the keys under the prefix, or revoke the
    //    leases, all within --dial-timeout (`ExitBudget`), so stopping never hangs on a silent etcd.
    let budget = ExitBudget::new(load.connect.dial_timeout);
    let cleaned = litter.clean_up(&mut client, budget).await?;
    outcome?;
    for line in cleaned {
        println!("{line}");
    }
    Ok(())
}
