//! The worker loops: where the requests are made. `drive` runs `--clients` workers over the connections;
//! `drive_puts` and `drive_txns` are the loops of the four ways, `put` and `txn-put`; `range`,
//! `lease-keepalive` and `watch-latency` write theirs beside their subcommand.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bench::Summary;
use etcd_client::{Client, Txn, TxnOp};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use recipes::shutdown::Shutdown;
use tokio::task::JoinSet;

use crate::keys::Keys;

/// Set on Ctrl-C or SIGTERM: every worker stops taking new requests and finishes the one in flight.
///
/// Dropping the workers instead would not be enough: a request already sent is applied by etcd even if
/// its client gives up on the reply, so a put could land *after* the clean-up deleted the prefix and stay
/// behind. Letting the requests in flight finish first (bounded by --dial-timeout) makes the clean-up last.
static STOPPING: AtomicBool = AtomicBool::new(false);

pub(crate) fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// Runs `work` unless Ctrl-C or SIGTERM comes first. On a signal: says so, tells the workers to stop, then
/// waits (up to `limit`) for `work` to end, so that no request is still on its way to etcd when the
/// clean-up runs; `None` then.
pub(crate) async fn unless_stopped<T>(
    work: impl std::future::Future<Output = T>,
    shutdown: &mut Shutdown,
    limit: Duration,
) -> Option<T> {
    tokio::pin!(work);
    let signal = match shutdown.unless_stopped(work.as_mut()).await {
        Ok(done) => return Some(done),
        Err(signal) => signal,
    };
    println!("{signal}: stopping and cleaning up");
    STOPPING.store(true, Ordering::Relaxed);
    if tokio::time::timeout(limit, work).await.is_err() {
        log::debug!("the requests in flight did not finish within {limit:?}");
    }
    None
}

/// `total` PUTs from `clients` concurrent workers spread over `conns`.
pub(crate) async fn drive_puts(
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
                // Go: cli.Put(ctx, key, value)
                client.put(key, value.as_slice(), None).await?;
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    })
    .await
}

/// `total` PUTs, `per_txn` of them in each transaction, from `clients` concurrent workers.
pub(crate) async fn drive_txns(
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
                // Go: cli.Txn(ctx).Then(clientv3.OpPut(key, value), ...).Commit()
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
pub(crate) async fn drive<F, Fut>(
    conns: &[Client],
    clients: u32,
    total: u64,
    worker: F,
) -> Result<Summary>
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
pub(crate) struct Next {
    counter: Arc<AtomicU64>,
    total: u64,
    clients: u64,
    bar: Option<ProgressBar>,
}

impl Next {
    /// Takes the next request number, or `None` when all are taken.
    pub(crate) fn claim_number(&mut self) -> Option<u64> {
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

    pub(crate) fn claim(&mut self) -> bool {
        self.claim_number().is_some()
    }

    /// About how many requests this worker will make, to size its latency vector once.
    pub(crate) fn share(&self) -> usize {
        (self.total / self.clients + 1) as usize
    }
}

/// A progress bar on stderr, shown only once a run has lasted a second, and never when stderr is not a
/// terminal (a pipe, a CI log, a test): `None` then, so the hot path skips it.
pub(crate) fn progress_bar(total: u64) -> Option<ProgressBar> {
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
