//! # bench: how to get throughput out of etcd from Rust
//!
//! Four ways to drive etcd hard from one process, measured side by side:
//!
//! 1. **sequential**: one request at a time. Each waits a full round trip plus a disk sync (etcd
//!    commits every write to its WAL before answering), so throughput is 1 / latency.
//! 2. **many requests over one client**: one `Client` is one HTTP/2 connection, and HTTP/2 multiplexes
//!    many streams over it. 64 requests in flight let etcd batch their commits into one disk sync.
//! 3. **many requests over several clients** (`--conns K`): K separate `Client::connect`s, so K TCP
//!    connections, K HTTP/2 flow-control windows and K server-side reader goroutines.
//! 4. **batching**: many PUTs in one transaction are one request, one Raft entry and one revision.
//!
//! The subcommands mirror etcd's own `benchmark` tool (tools/benchmark in etcd's repository), with the
//! same flags and the same `Summary:` lines, so the two compare like for like (`scripts/bench-compare.sh`).
//! Each is a file of its own beside this one (`put.rs`, `range.rs`, `txn_put.rs`, `lease_keepalive.rs`,
//! `watch_latency.rs`), and so is the default run (`four_ways.rs`); the worker loops they share, where the
//! `put` and `txn` calls are made, are in `drive.rs`. This file is the run itself: parse the flags,
//! connect, claim the prefix, run, clean up, report.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run --release -p bench                       # the four ways, 2,000 puts each
//! cargo run --release -p bench -- put --clients 64 --conns 1 --total 20000 --val-size 256
//! cargo run --release -p bench -- range /bench/k --consistency s --clients 16 --total 20000
//! cargo run --release -p bench -- txn-put --txn-ops 64 --total 20000
//! cargo run --release -p bench -- lease-keepalive --clients 16 --total 20000
//! cargo run --release -p bench -- watch-latency --put-total 2000
//! ```
//!
//! Every key goes under `--prefix` (default `/bench/`), which must be empty; the run deletes it at the
//! end and revokes the leases it granted, also on Ctrl-C.
//!
//! Try next: `--runtime multi` against the default `current`, and `--conns 1` against `--conns 8` with
//! `--clients 64`; on a 2-core machine shared with etcd, watch `top` while it runs.

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

use plan::Plan;

fn main() -> ExitCode {
    etcd_connect::init();
    // 1. Parse the flags (etcd's `benchmark` flags, before or after the subcommand), and check them
    //    against each other: a run that cannot work is refused in one line, before anything is sent.
    let plan = Plan::check(cli::Args::parse_anywhere());
    // One thread unless --runtime multi: runtime.rs says why a load generator beside etcd wants that.
    let result = plan.and_then(|plan| runtime::build(plan.load().runtime)?.block_on(run(plan)));
    // 6. Report: an error as one line on stderr (`error: what failed: why`), and exit code 1.
    recipes::errors::report(result)
}

async fn run(plan: Plan) -> Result<()> {
    // Signals first, so a Ctrl-C during setup is remembered and the run still cleans up.
    let mut shutdown = Shutdown::listen()?;
    let load = plan.load().clone();

    // 2. Connect: one `Client` is one HTTP/2 connection, which its clones share; `--conns K` (8 for the
    //    four ways) opens K-1 more, each a `Client::connect` of its own (connections.rs).
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
