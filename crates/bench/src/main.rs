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
//! `watch_latency.rs`); this file is the four ways and the worker loops they share.
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

mod cli;
mod keys;
mod lease_keepalive;
mod put;
mod range;
mod shared;
mod txn_put;
mod watch_latency;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bench::Summary;
use etcd_client::{Client, DeleteOptions, GetOptions, Txn, TxnOp};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinSet;

use cli::{Command, Runtime};
use keys::Keys;
use lease_keepalive::lease_keepalive;
use put::put;
use range::range;
use txn_put::txn_put;
use watch_latency::watch_latency;

// Runtime flavor. One thread (current_thread) by default, for a reason particular to a load generator that
// shares its machine with etcd: every CPU cycle the client spends is one etcd cannot, and a multi-thread
// runtime spends more of them, waking tasks across threads (futex calls) and moving work between cores. On
// the 2-core machine of docs/performance.md (release build, runs alternated pair by pair), current_thread
// used a quarter less CPU for the same requests (`put --clients 64 --conns 1`: 0.72 s against 0.98 s per
// 20,000 puts) and so finished sooner: 7% for that run, 10% for sequential puts, 7% for 64 reads at a
// time (medians of 7 to 9 pairs). One thread is not a limit here: it does only encoding and framing, a
// small part of each request's cost, while etcd does the rest. Where etcd runs elsewhere and the client
// has cores to itself, `--runtime multi` spreads the client over them: measure yours. The runtime is
// built by hand, not with `#[tokio::main]`, only so that the flag can choose it.
fn main() -> ExitCode {
    etcd_connect::init();
    let args = cli::Args::parse_anywhere();
    let flavor = match &args.command {
        None => Runtime::Current,
        Some(Command::Put(a)) => a.load.runtime,
        Some(Command::Range(a)) => a.load.runtime,
        Some(Command::TxnPut(a)) => a.load.runtime,
        Some(Command::LeaseKeepalive(a)) => a.load.runtime,
        Some(Command::WatchLatency(a)) => a.load.runtime,
    };
    log::debug!("tokio runtime: {flavor:?}");
    let runtime = match flavor {
        Runtime::Multi => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        Runtime::Current => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let result = runtime
        .context("cannot start the tokio runtime")
        .and_then(|rt| rt.block_on(run(args)));
    recipes::errors::report(result)
}

async fn run(args: cli::Args) -> Result<()> {
    // Signals first, so a Ctrl-C during setup is remembered and the run still cleans up.
    let mut shutdown = recipes::shutdown::Shutdown::listen()?;
    match args.command {
        None => four_ways(args.load.connect, args.load.prefix, &mut shutdown).await,
        Some(Command::Put(a)) => put(a, &mut shutdown).await,
        Some(Command::Range(a)) => range(a, &mut shutdown).await,
        Some(Command::TxnPut(a)) => txn_put(a, &mut shutdown).await,
        Some(Command::LeaseKeepalive(a)) => lease_keepalive(a, &mut shutdown).await,
        Some(Command::WatchLatency(a)) => watch_latency(a, &mut shutdown).await,
    }
}

// ---------------------------------------------------------------------------------------------------
// The default run: the four ways side by side.
// ---------------------------------------------------------------------------------------------------

/// Puts per way in the default run: enough to see the difference, short enough for a workshop.
const DEFAULT_TOTAL: u64 = 2_000;
const DEFAULT_VALUE: usize = 256;

/// Set on Ctrl-C or SIGTERM: every worker stops taking new requests and finishes the one in flight.
///
/// Dropping the workers instead would not be enough: a request already sent is applied by etcd even if
/// its client gives up on the reply, so a put could land *after* the clean-up deleted the prefix and stay
/// behind. Letting the requests in flight finish first (bounded by --dial-timeout) makes the clean-up last.
static STOPPING: AtomicBool = AtomicBool::new(false);

fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// On a signal: tells the workers to stop, then waits (up to `limit`) for `work` to end, so that no
/// request is still on its way to etcd when the clean-up runs.
async fn stop_and_drain<F: std::future::Future>(work: std::pin::Pin<&mut F>, limit: Duration) {
    STOPPING.store(true, Ordering::Relaxed);
    if tokio::time::timeout(limit, work).await.is_err() {
        log::debug!("the requests in flight did not finish within {limit:?}");
    }
}

async fn four_ways(
    connect: etcd_connect::ConnectArgs,
    prefix: String,
    shutdown: &mut recipes::shutdown::Shutdown,
) -> Result<()> {
    // 0. Eight connections: separate `Client::connect`s (through `etcd_connect::connect`, which also
    //    proves etcd answers). `Client::clone()` would NOT open a connection: clones share one channel.
    let Some(conns) = connect_or_stop(&connect, 8, shutdown).await? else {
        return Ok(());
    };
    println!("connected to etcd at {}", connect.endpoints_shown());
    let mut client = conns[0].clone();
    claim_prefix(&mut client, &prefix).await?;
    let keys = Keys::new(&prefix, 8, DEFAULT_TOTAL, true)?;
    let value = vec![b'v'; DEFAULT_VALUE];
    println!(
        "writing {DEFAULT_TOTAL} puts of {DEFAULT_VALUE}-byte values under {prefix}, four ways:"
    );

    let work = async {
        let one = &conns[..1];
        let s = drive_puts(one, 1, DEFAULT_TOTAL, &keys, &value).await?;
        if stopping() {
            return Ok(());
        }
        println!(
            "1. sequential, one request at a time: {:.0} put/s (p99 {:.1?})",
            s.requests_per_sec(),
            s.percentile(99.0)
        );
        let s = drive_puts(one, 64, DEFAULT_TOTAL, &keys, &value).await?;
        if stopping() {
            return Ok(());
        }
        println!(
            "2. 64 requests in flight over one client (one HTTP/2 connection): {:.0} put/s (p99 {:.1?})",
            s.requests_per_sec(),
            s.percentile(99.0)
        );
        let s = drive_puts(&conns, 64, DEFAULT_TOTAL, &keys, &value).await?;
        if stopping() {
            return Ok(());
        }
        println!(
            "3. 64 requests in flight over 8 clients (8 connections): {:.0} put/s (p99 {:.1?})",
            s.requests_per_sec(),
            s.percentile(99.0)
        );
        let s = drive_txns(one, 1, DEFAULT_TOTAL, 64, &keys, &value).await?;
        if stopping() {
            return Ok(());
        }
        println!(
            "4. 64 puts per transaction, one transaction at a time: {:.0} put/s ({} transactions, p99 {:.1?})",
            DEFAULT_TOTAL as f64 / s.total.as_secs_f64(),
            s.count(),
            s.percentile(99.0)
        );
        Ok::<_, anyhow::Error>(())
    };
    tokio::pin!(work);
    let outcome = tokio::select! {
        r = &mut work => r,
        signal = shutdown.recv() => {
            println!("{signal}: stopping and cleaning up");
            stop_and_drain(work, connect.dial_timeout).await;
            Ok(())
        }
    };
    let deleted = delete_prefix(&mut client, &prefix, connect.dial_timeout).await?;
    outcome?;
    println!("deleted the {deleted} keys written under {prefix}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The worker loops: where the requests are made.
// ---------------------------------------------------------------------------------------------------

/// `total` PUTs from `clients` concurrent workers spread over `conns`.
async fn drive_puts(
    conns: &[Client],
    clients: u32,
    total: u64,
    keys: &Keys,
    value: &[u8],
) -> Result<Summary> {
    let value = Arc::new(value.to_vec());
    drive(conns, clients, total, |worker, mut client, mut next| {
        let (mut keys, value) = (keys.for_worker(worker), value.clone());
        async move {
            let mut latencies = Vec::with_capacity(next.share());
            while let Some(n) = next.claim_number() {
                // Allocation per request: the key is written in place into a reused buffer (no format!),
                // then copied once into the request; the value is copied once. Nothing else is allocated
                // here; etcd-client builds the PutRequest around these two vectors.
                let key = keys.key_for(n).to_vec();
                let started = Instant::now();
                client.put(key, value.as_slice(), None).await?;
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    })
    .await
}

/// `total` PUTs, `per_txn` of them in each transaction, from `clients` concurrent workers.
async fn drive_txns(
    conns: &[Client],
    clients: u32,
    total: u64,
    per_txn: u32,
    keys: &Keys,
    value: &[u8],
) -> Result<Summary> {
    let value = Arc::new(value.to_vec());
    let per_txn = u64::from(per_txn);
    let txns = total.div_ceil(per_txn);
    drive(conns, clients, txns, |_, mut client, mut next| {
        let (mut keys, value) = (keys.for_worker(0), value.clone());
        async move {
            let mut latencies = Vec::with_capacity(next.share());
            while let Some(txn_number) = next.claim_number() {
                // A transaction with no conditions runs its `and_then` ops: here, up to `per_txn` PUTs.
                // They are one request, one Raft entry, one disk sync and one revision for all of them;
                // etcd allows 128 ops per transaction unless started with a higher --max-txn-ops.
                let first = txn_number * per_txn;
                let ops: Vec<TxnOp> = (first..(first + per_txn).min(total))
                    .map(|i| TxnOp::put(keys.key(i).to_vec(), value.as_slice(), None))
                    .collect();
                let started = Instant::now();
                client.txn(Txn::new().and_then(ops)).await?;
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    })
    .await
}

/// Runs `clients` workers, worker `i` on connection `i % conns.len()`, each claiming request numbers
/// from one shared counter until `total` are claimed (as etcd's tool feeds its goroutines from one
/// channel). Each worker returns its own latencies, merged at the end: no lock on the hot path.
async fn drive<F, Fut>(conns: &[Client], clients: u32, total: u64, worker: F) -> Result<Summary>
where
    F: Fn(usize, Client, Next) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Duration>>> + Send + 'static,
{
    let counter = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(total);
    let started = Instant::now();
    // A JoinSet aborts its tasks when dropped: on Ctrl-C the caller drops this future, and with it
    // every request in flight.
    let mut tasks = JoinSet::new();
    for i in 0..clients as usize {
        // `clone()` of a Client is cheap and shares its connection: this is how 64 tasks share one
        // HTTP/2 connection, each request on its own stream.
        let client = conns[i % conns.len()].clone();
        let next = Next {
            counter: counter.clone(),
            total,
            clients: u64::from(clients),
            bar: bar.clone(),
        };
        tasks.spawn(worker(i, client, next));
    }
    let mut latencies = Vec::with_capacity(total as usize);
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined.context("a benchmark worker stopped")??);
    }
    let elapsed = started.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(Summary::new(latencies, elapsed))
}

/// A worker's view of the shared request counter (and of the progress bar).
struct Next {
    counter: Arc<AtomicU64>,
    total: u64,
    clients: u64,
    bar: Option<ProgressBar>,
}

impl Next {
    /// Takes the next request number, or `None` when all are taken.
    fn claim_number(&mut self) -> Option<u64> {
        if stopping() {
            return None;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        if n >= self.total {
            return None;
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        Some(n)
    }

    fn claim(&mut self) -> bool {
        self.claim_number().is_some()
    }

    /// About how many requests this worker will make, to size its latency vector once.
    fn share(&self) -> usize {
        (self.total / self.clients + 1) as usize
    }
}

/// A progress bar on stderr, shown only once a run has lasted a second, and never when stderr is not a
/// terminal (a pipe, a CI log, a test): `None` then, so the hot path skips it.
fn progress_bar(total: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}") {
        bar.set_style(style);
    }
    let later = bar.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !later.is_finished() {
            later.set_draw_target(ProgressDrawTarget::stderr());
        }
    });
    Some(bar)
}

// ---------------------------------------------------------------------------------------------------
// Connecting, claiming the prefix and cleaning up.
// ---------------------------------------------------------------------------------------------------

/// `count` separate connections. One `Client` is one HTTP/2 connection (a tonic `Channel`); its clones
/// share it. HTTP/2 window sizes are tonic settings that etcd-client 0.21's `ConnectOptions` does not
/// expose; what it does expose (keep-alive pings, timeouts) `etcd_connect::connect` sets.
async fn connect_or_stop(
    connect: &etcd_connect::ConnectArgs,
    count: u32,
    shutdown: &mut recipes::shutdown::Shutdown,
) -> Result<Option<Vec<Client>>> {
    let all = async {
        let mut tasks = JoinSet::new();
        for _ in 0..count {
            let connect = connect.clone();
            tasks.spawn(async move { etcd_connect::connect(&connect).await });
        }
        let mut conns = Vec::with_capacity(count as usize);
        while let Some(joined) = tasks.join_next().await {
            conns.push(joined.context("a connection attempt stopped")??);
        }
        Ok::<_, anyhow::Error>(conns)
    };
    tokio::select! {
        conns = all => Ok(Some(conns?)),
        signal = shutdown.recv() => {
            println!("{signal}: stopped before connecting");
            Ok(None)
        }
    }
}

/// Refuses a prefix that already holds keys: the run deletes its whole prefix at the end, which is only
/// safe because it was empty at the start.
async fn claim_prefix(client: &mut Client, prefix: &str) -> Result<()> {
    let existing = client
        .get(
            prefix,
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(1),
            ),
        )
        .await
        .with_context(|| format!("check that {prefix} is empty"))?;
    if let Some(kv) = existing.kvs().first() {
        bail!(
            "{prefix} already holds {} key(s) (first: {}), which this run did not write; choose an empty \
             --prefix (or, if they are left from an interrupted run, `etcdctl del --prefix {prefix}`)",
            existing.count(),
            String::from_utf8_lossy(kv.key())
        );
    }
    Ok(())
}

/// Deletes everything under `prefix`, within `limit`, and says how many keys went.
///
/// A prefix delete is acceptable here, and only here, because `claim_prefix` refused a non-empty prefix
/// at the start: every key under it was written by this run. (Another client writing under /bench/
/// during the run would lose its keys too; that is why the prefix is a flag.)
async fn delete_prefix(client: &mut Client, prefix: &str, limit: Duration) -> Result<i64> {
    let deleted = tokio::time::timeout(
        limit,
        client.delete(prefix, Some(DeleteOptions::new().with_prefix())),
    )
    .await
    .with_context(|| format!("delete the keys under {prefix}: no answer within {limit:?}"))?
    .with_context(|| format!("delete the keys under {prefix}"))?;
    Ok(deleted.deleted())
}
