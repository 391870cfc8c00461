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

use cli::{Command, Load, Runtime};

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
    etcd_connect::report(result)
}

async fn run(args: cli::Args) -> Result<()> {
    // Signals first, so a Ctrl-C during setup is remembered and the run still cleans up.
    let mut shutdown = etcd_connect::Shutdown::listen()?;
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
    shutdown: &mut etcd_connect::Shutdown,
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
// The subcommands, as etcd's `benchmark` tool has them.
// ---------------------------------------------------------------------------------------------------

async fn put(a: cli::PutArgs, shutdown: &mut etcd_connect::Shutdown) -> Result<()> {
    let load = &a.load;
    let keys = Keys::new(
        &load.prefix,
        a.key_size,
        a.key_space_size,
        a.sequential_keys,
    )?;
    let Some(conns) = setup(load, shutdown).await? else {
        return Ok(());
    };
    println!(
        "bench put: {} puts, {}-byte values, {} key(s) under {}, {} client(s) over {} connection(s)",
        a.total, a.val_size, a.key_space_size, load.prefix, load.clients, load.conns
    );
    // Allocation per request: the value is built once; each request gets a copy, because `put` takes
    // its arguments by value (`impl Into<Vec<u8>>`) to move them into the protobuf message.
    let value = vec![b'v'; a.val_size as usize];
    let work = drive_puts(&conns, load.clients, a.total, &keys, &value);
    finish(load, &conns, work, shutdown, "puts").await
}

async fn range(a: cli::RangeArgs, shutdown: &mut etcd_connect::Shutdown) -> Result<()> {
    let load = &a.load;
    let Some(conns) = setup(load, shutdown).await? else {
        return Ok(());
    };
    let serializable = a.consistency == "s";
    println!(
        "bench range: {} {} reads of {}, {} client(s) over {} connection(s)",
        a.total,
        if serializable {
            "serializable"
        } else {
            "linearizable"
        },
        a.key,
        load.clients,
        load.conns
    );
    let key = a.key.into_bytes();
    let work = drive(&conns, load.clients, a.total, |_, mut client, mut next| {
        let key = key.clone();
        async move {
            // `--consistency l` (the default) is linearizable: the member asks the leader for its commit
            // index and waits to catch up, a round of messages per read (batched under load).
            // `s` is serializable: the member answers from its own copy at once, which may be slightly
            // stale on a follower. On a one-member cluster both see the same data; only the cost differs.
            let options = serializable.then(|| GetOptions::new().with_serializable());
            let mut latencies = Vec::with_capacity(next.share());
            while next.claim() {
                let started = Instant::now();
                client.get(key.clone(), options.clone()).await?;
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    });
    finish(load, &conns, work, shutdown, "reads").await
}

async fn txn_put(a: cli::TxnPutArgs, shutdown: &mut etcd_connect::Shutdown) -> Result<()> {
    let load = &a.load;
    // Keys 0..total: a transaction may not write one key twice, so every key is distinct.
    let keys = Keys::new(&load.prefix, a.key_size, a.total, true)?;
    // etcd refuses a request over its --max-request-bytes (in gRPC's words, "received message larger than
    // max"), whatever --max-txn-ops allows: check the largest transaction before connecting.
    let ops = u64::from(a.txn_ops).min(a.total);
    let key_bytes = (load.prefix.len() + a.key_size as usize) as u64;
    let bytes = txn_request_bytes(ops, key_bytes, u64::from(a.val_size));
    if bytes > a.max_request_bytes {
        bail!(
            "one transaction of {ops} puts of {key_bytes}-byte keys and {}-byte values is {bytes} bytes, \
             over the {} bytes etcd accepts in one request (its --max-request-bytes, 1.5 MiB by default): \
             lower --txn-ops or --val-size (or, for an etcd started with a higher limit, pass that as \
             --max-request-bytes)",
            a.val_size,
            a.max_request_bytes
        );
    }
    let Some(conns) = setup(load, shutdown).await? else {
        return Ok(());
    };
    let txns = a.total.div_ceil(u64::from(a.txn_ops));
    println!(
        "bench txn-put: {} puts in {txns} transactions of up to {} puts, {} client(s) over {} connection(s)",
        a.total, a.txn_ops, load.clients, load.conns
    );
    let value = vec![b'v'; a.val_size as usize];
    let work = drive_txns(&conns, load.clients, a.total, a.txn_ops, &keys, &value);
    finish(load, &conns, work, shutdown, "transactions").await
}

/// The encoded size of a transaction of `ops` PUTs with `key`-byte keys and `value`-byte values: what etcd
/// measures against --max-request-bytes. In protobuf, a `bytes` or message field costs a one-byte tag, its
/// length as a varint, then its content; each PUT is a `PutRequest` (key, value) inside a `RequestOp`
/// inside the `TxnRequest`'s `success` list, and an empty value is left out.
fn txn_request_bytes(ops: u64, key: u64, value: u64) -> u64 {
    fn field(len: u64) -> u64 {
        // A varint holds 7 bits per byte.
        let bits = 64 - u64::from((len | 1).leading_zeros());
        1 + bits.div_ceil(7) + len
    }
    let put = field(key) + if value > 0 { field(value) } else { 0 };
    ops * field(field(put))
}

/// TTL of the leases `lease-keepalive` renews: long enough never to expire during a run.
const BENCH_LEASE_TTL: i64 = 60;

async fn lease_keepalive(a: cli::LeaseArgs, shutdown: &mut etcd_connect::Shutdown) -> Result<()> {
    let load = &a.load;
    let Some(conns) = setup(load, shutdown).await? else {
        return Ok(());
    };
    // One lease per client, as etcd's tool does; granted before the clock starts, revoked at the end
    // (also on Ctrl-C), so the run leaves no lease behind.
    let mut leases = Vec::with_capacity(load.clients as usize);
    for i in 0..load.clients as usize {
        let mut client = conns[i % conns.len()].clone();
        let granted = client
            .lease_grant(BENCH_LEASE_TTL, None)
            .await
            .context("grant a lease")?;
        leases.push(granted.id());
    }
    println!(
        "bench lease-keepalive: {} renewals of {} lease(s), {} client(s) over {} connection(s)",
        a.total,
        leases.len(),
        load.clients,
        load.conns
    );
    let ids = leases.clone();
    let work = drive(
        &conns,
        load.clients,
        a.total,
        move |worker, mut client, mut next| {
            let id = ids[worker];
            async move {
                // `lease_keep_alive` opens ONE bidirectional stream; each renewal is then a message out and a
                // message back on it. (Go's tool calls `KeepAliveOnce`, which opens a stream per renewal.)
                let (mut keeper, mut replies) = client.lease_keep_alive(id).await?;
                let mut latencies = Vec::with_capacity(next.share());
                while next.claim() {
                    let started = Instant::now();
                    keeper.keep_alive().await?;
                    match replies.message().await? {
                        Some(reply) if reply.ttl() > 0 => {}
                        _ => bail!("lease {id:x} is gone: etcd answered the renewal with TTL 0"),
                    }
                    latencies.push(started.elapsed());
                }
                Ok(latencies)
            }
        },
    );
    let outcome = measure_or_stop(work, shutdown, "renewals", load.connect.dial_timeout).await;
    let mut client = conns[0].clone();
    let revoked = revoke(&mut client, &leases, load.connect.dial_timeout).await?;
    outcome?;
    println!("revoked the {revoked} lease(s) it granted");
    Ok(())
}

async fn watch_latency(a: cli::WatchArgs, shutdown: &mut etcd_connect::Shutdown) -> Result<()> {
    let load = &a.load;
    let Some(conns) = setup(load, shutdown).await? else {
        return Ok(());
    };
    let mut client = conns[0].clone();
    let key = format!("{}watch-latency", load.prefix);
    println!(
        "bench watch-latency: {} puts to {key}, each timed until its watch event arrives",
        a.put_total
    );
    let value = vec![b'v'; a.val_size as usize];
    // The watch is opened first and confirmed ("created") before the clock starts.
    let mut stream = client
        .watch_client()
        .max_decoding_message_size(etcd_connect::MAX_RESPONSE)
        .watch(key.as_str(), None)
        .await
        .with_context(|| format!("watch {key}"))?;
    stream
        .message()
        .await
        .context("wait for the watch to start")?;
    let total = a.put_total;
    let work = async {
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(total as usize);
        let bar = progress_bar(total);
        for _ in 0..total {
            if stopping() {
                break;
            }
            let sent = Instant::now();
            // The put and the wait for its event run together: the event can arrive before the put's
            // own reply. Latency is from sending the put to receiving the event with its revision.
            let mut put_client = client.clone();
            let (put, first) =
                tokio::join!(put_client.put(key.as_str(), value.clone(), None), async {
                    (stream.message().await, Instant::now())
                });
            let revision = put?.header().map_or(0, |h| h.revision());
            let (mut message, mut seen) = first;
            loop {
                let response = message?.context("the watch stream ended")?;
                if response
                    .events()
                    .iter()
                    .any(|e| e.kv().is_some_and(|kv| kv.mod_revision() == revision))
                {
                    break;
                }
                message = stream.message().await;
                seen = Instant::now();
            }
            latencies.push(seen - sent);
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok(Summary::new(latencies, started.elapsed()))
    };
    let outcome = measure_or_stop(work, shutdown, "watch events", load.connect.dial_timeout).await;
    let deleted = delete_prefix(&mut client, &load.prefix, load.connect.dial_timeout).await?;
    outcome?;
    println!("deleted the {deleted} keys written under {}", load.prefix);
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

/// The keys a run writes: `<prefix>` then a `key_size`-digit zero-padded number, `0..space`.
/// Printable (unlike the Go tool's binary keys), so `etcdctl get --prefix /bench/` shows them.
#[derive(Clone)]
struct Keys {
    buffer: Vec<u8>,
    digits: usize,
    space: u64,
    sequential: bool,
    random: u64,
}

impl Keys {
    fn new(prefix: &str, key_size: u32, space: u64, sequential: bool) -> Result<Keys> {
        let digits = key_size as usize;
        if digits < 20 && 10u64.pow(digits as u32) < space {
            bail!("--key-size {key_size} has room for 10^{key_size} keys, fewer than --key-space-size {space}");
        }
        let mut buffer = prefix.as_bytes().to_vec();
        buffer.resize(prefix.len() + digits, b'0');
        Ok(Keys {
            buffer,
            digits,
            space,
            sequential,
            random: 0,
        })
    }

    /// This worker's copy, with its own buffer and random sequence.
    fn for_worker(&self, worker: usize) -> Keys {
        // A tiny xorshift generator, seeded from the clock and the worker number: enough to pick keys,
        // and no `rand` dependency.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as u64);
        let mut keys = self.clone();
        keys.random = (nanos ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        keys
    }

    /// The key for request number `n`: key `n` with --sequential-keys (so the workers together write
    /// 0, 1, 2, ... as etcd's tool does), otherwise a random one from the worker's own generator.
    fn key_for(&mut self, n: u64) -> &[u8] {
        let i = if self.sequential {
            n
        } else {
            self.random ^= self.random << 13;
            self.random ^= self.random >> 7;
            self.random ^= self.random << 17;
            self.random
        };
        self.key(i)
    }

    /// Key number `i % space`, written into the reused buffer.
    fn key(&mut self, i: u64) -> &[u8] {
        let mut n = i % self.space;
        let end = self.buffer.len();
        for slot in self.buffer[end - self.digits..].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        &self.buffer
    }
}

// ---------------------------------------------------------------------------------------------------
// Setup, reporting and cleanup, shared by the subcommands.
// ---------------------------------------------------------------------------------------------------

/// Connects (K connections), checks the flags against each other, and claims the prefix.
/// `None` when a signal arrived first.
async fn setup(load: &Load, shutdown: &mut etcd_connect::Shutdown) -> Result<Option<Vec<Client>>> {
    if load.conns > load.clients {
        bail!(
            "--conns {} is more than --clients {}: each connection needs at least one client to use it",
            load.conns,
            load.clients
        );
    }
    let Some(conns) = connect_or_stop(&load.connect, load.conns, shutdown).await? else {
        return Ok(None);
    };
    let mut client = conns[0].clone();
    claim_prefix(&mut client, &load.prefix).await?;
    Ok(Some(conns))
}

/// `count` separate connections. One `Client` is one HTTP/2 connection (a tonic `Channel`); its clones
/// share it. HTTP/2 window sizes are tonic settings that etcd-client 0.21's `ConnectOptions` does not
/// expose; what it does expose (keep-alive pings, timeouts) `etcd_connect::connect` sets.
async fn connect_or_stop(
    connect: &etcd_connect::ConnectArgs,
    count: u32,
    shutdown: &mut etcd_connect::Shutdown,
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

/// Revokes `leases`, each within `limit`; returns how many were revoked.
async fn revoke(client: &mut Client, leases: &[i64], limit: Duration) -> Result<usize> {
    for &id in leases {
        tokio::time::timeout(limit, client.lease_revoke(id))
            .await
            .with_context(|| format!("revoke lease {id:x}: no answer within {limit:?}"))?
            .with_context(|| format!("revoke lease {id:x}"))?;
    }
    Ok(leases.len())
}

/// Runs the measured work unless a signal comes first, then prints etcd's summary lines.
async fn measure_or_stop(
    work: impl std::future::Future<Output = Result<Summary>>,
    shutdown: &mut etcd_connect::Shutdown,
    what: &str,
    limit: Duration,
) -> Result<()> {
    tokio::pin!(work);
    let summary = tokio::select! {
        summary = &mut work => summary?,
        signal = shutdown.recv() => {
            println!("{signal}: stopping and cleaning up");
            stop_and_drain(work, limit).await;
            return Ok(());
        }
    };
    print!("{}", summary.render());
    println!(
        "\n{} {what}: p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, p99.9 {:.1?}, slowest {:.1?}",
        summary.count(),
        summary.percentile(50.0),
        summary.percentile(90.0),
        summary.percentile(99.0),
        summary.percentile(99.9),
        summary.slowest()
    );
    Ok(())
}

/// Measures, then deletes the prefix (also after an error or a signal).
async fn finish(
    load: &Load,
    conns: &[Client],
    work: impl std::future::Future<Output = Result<Summary>>,
    shutdown: &mut etcd_connect::Shutdown,
    what: &str,
) -> Result<()> {
    let outcome = measure_or_stop(work, shutdown, what, load.connect.dial_timeout).await;
    let mut client = conns[0].clone();
    let deleted = delete_prefix(&mut client, &load.prefix, load.connect.dial_timeout).await?;
    outcome?;
    println!("deleted the {deleted} keys written under {}", load.prefix);
    Ok(())
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
