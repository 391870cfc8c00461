//! The parts of `cargo run -p txn` that are not the lesson, in the order `main.rs` calls them: the check
//! that the demo prefix is empty, the signal check between steps, step 2's "other client", the opening of
//! step 3's accounts, its workers and their tally, the sum of the balances, and what the clean-up says when
//! another client changed a key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, GetResponse, KeyValue, Txn, TxnOp, TxnResponse,
};
use recipes::errors::one_line;
use recipes::shutdown::Shutdown;
use tokio::task::JoinSet;
use tokio::time::Instant;
use txn::{kv_of, revision_of};

use crate::MAX_AMOUNT;

/// Fails, naming a few of its keys, if `prefix` holds any: the clean-up must only ever delete what this run
/// wrote. `with_keys_only` and `with_limit` keep the check cheap on a busy prefix.
pub async fn refuse_a_used_prefix(client: &mut Client, prefix: &str) -> Result<()> {
    let options = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_limit(3);
    let existing = client
        .get(prefix, Some(options))
        .await
        .with_context(|| format!("check that {prefix} is empty"))?;
    if existing.count() == 0 {
        return Ok(());
    }
    let keys: Vec<_> = existing
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()))
        .collect();
    bail!(
        "{prefix} already holds {} key(s) ({}{}), which this program did not write; choose an empty \
         --demo-prefix (or, if they are left from an interrupted run, `etcdctl del --prefix {prefix}`)",
        existing.count(),
        keys.join(", "),
        if existing.count() > keys.len() as i64 { ", ..." } else { "" }
    );
}

/// Whether a Ctrl-C or SIGTERM has arrived, without waiting for one; if so, says that the run stops before
/// `step`. tokio's `timeout` polls the future before looking at the clock, so a zero timeout asks "is it
/// ready now?".
pub async fn stopped_before(step: u32, shutdown: &mut Shutdown) -> bool {
    match tokio::time::timeout(Duration::ZERO, shutdown.recv()).await {
        Ok(signal) => {
            println!("{signal}: stopping before step {step}");
            true
        }
        Err(_) => false,
    }
}

/// The outcome of a run from those of its steps and of its clean-up: the first error, or both in one line.
pub fn first_error(steps: Result<()>, cleaned: Result<()>) -> Result<()> {
    if let (Err(e), Err(cleanup)) = (&steps, &cleaned) {
        bail!("{}; and then: {}", one_line(e), one_line(cleanup));
    }
    steps.and(cleaned)
}

/// The counter of step 2 as a GET of `key` found it: its value as shown, its mod revision (the revision
/// of its last write) and the value plus 1. An absent key counts as 0, with a mod revision of 0.
pub fn counter(kvs: &[KeyValue], key: &str) -> Result<(String, i64, u64)> {
    let Some(kv) = kvs.first() else {
        return Ok(("(absent, counts as 0)".into(), 0, 1));
    };
    let text = String::from_utf8_lossy(kv.value()).into_owned();
    let value: u64 = text
        .parse()
        .map_err(|e| anyhow!("{key} holds {text:?}, not a whole number ({e})"))?;
    let new = value
        .checked_add(1)
        .with_context(|| format!("{key} holds {value}: no room to add 1"))?;
    Ok((text, kv.mod_revision(), new))
}

/// Step 2's "another client": puts `key = value` between the step's read and its write, so that its
/// compare-and-swap loses a race on every run. The put creates the key, so it goes into `created`.
pub async fn meanwhile_another_client_puts(
    client: &mut Client,
    key: &str,
    value: &str,
    created: &mut Vec<(String, i64)>,
) -> Result<()> {
    let put = client
        .put(key, value, None)
        .await
        .with_context(|| format!("put {key}"))?;
    let revision = put.header().map_or(0, |h| h.revision());
    created.push((key.to_string(), revision));
    println!("   meanwhile another client puts {key} = {value} (revision {revision})");
    Ok(())
}

/// Opens the `--accounts` accounts of step 3 under `--demo-prefix`, with `balance` each, in one
/// transaction: step 1's put-if-absent over all of them, *if* none exists (a create revision 0 compare per
/// key) *then* put them all, *else* read them, to say which exist. Adds them to `created` and returns their
/// keys.
pub async fn open_accounts(
    client: &mut Client,
    args: &crate::cli::Args,
    balance: u64,
    created: &mut Vec<(String, i64)>,
) -> Result<Vec<String>> {
    let (prefix, count) = (&args.demo_prefix, args.accounts);
    let accounts: Vec<String> = (1..=count)
        .map(|i| format!("{prefix}account-{i}"))
        .collect();
    // Go: cli.Txn(ctx).If(Compare(CreateRevision(a), "=", 0), ...).Then(OpPut(a, "100"), ...).Else(OpGet(a), ...)
    let (mut absent, mut puts, mut reads) = (vec![], vec![], vec![]);
    for key in &accounts {
        let key = key.as_str();
        absent.push(Compare::create_revision(key, CompareOp::Equal, 0));
        puts.push(TxnOp::put(key, balance.to_string(), None));
        reads.push(TxnOp::get(key, Some(GetOptions::new().with_keys_only())));
    }
    let txn = Txn::new().when(absent).and_then(puts).or_else(reads);
    let opened = client
        .txn(txn)
        .await
        .with_context(|| format!("open {count} accounts under {prefix}"))?;
    if !opened.succeeded() {
        bail!(
            "opened no account: another client wrote {} since this run found {prefix} empty",
            keys_read(&opened, accounts.len())
        );
    }
    let revision = revision_of(&opened);
    created.extend(accounts.iter().map(|key| (key.clone(), revision)));
    println!(
        "   opened {} .. {} with {balance} each, in one put-if-absent transaction (revision {revision}): \
         total {}",
        accounts[0],
        accounts[accounts.len() - 1],
        balance * u64::from(count)
    );
    Ok(accounts)
}

/// The keys that the `count` GETs of a transaction's else branch found, comma-separated.
fn keys_read(resp: &TxnResponse, count: usize) -> String {
    let keys: Vec<String> = (0..count)
        .filter_map(|i| kv_of(resp, i))
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    keys.join(", ")
}

/// What the workers did, counted across all of them (also when Ctrl-C stops them halfway).
pub struct Tally {
    /// Workers, and transfers that each makes.
    workers: u32,
    transfers: u32,
    started: Instant,
    /// Transfers that moved money.
    moved: AtomicU64,
    /// Transfers whose source held less than the amount: nothing moved.
    short: AtomicU64,
    /// Transactions refused because another worker wrote one of the two accounts first, then retried.
    conflicts: AtomicU64,
}

impl Tally {
    /// Nothing done yet, by `workers` workers that start now, each to make `transfers` transfers.
    pub fn start(workers: u32, transfers: u32) -> Tally {
        Tally {
            workers,
            transfers,
            started: Instant::now(),
            moved: AtomicU64::new(0),
            short: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        }
    }

    /// Prints what the workers did: all of it, or what they did before `stopped_by` a signal.
    pub fn print(&self, stopped_by: Option<&str>) {
        let took = self.started.elapsed();
        let planned = u64::from(self.workers) * u64::from(self.transfers);
        let moved = self.moved.load(Ordering::Relaxed);
        let short = self.short.load(Ordering::Relaxed);
        let conflicts = self.conflicts.load(Ordering::Relaxed);
        let done = moved + short;
        match stopped_by {
            None => println!(
                "   {done} transfers in {took:.1?}: {moved} moved money, {short} found too little in the \
                 source; {conflicts} conflicts retried"
            ),
            Some(signal) => println!(
                "   {signal}: stopped the workers after {done} of {planned} transfers ({moved} moved money, \
                 {short} found too little; {conflicts} conflicts retried)"
            ),
        }
    }
}

/// Runs the workers that `tally` counts, each a task making transfers between `accounts`, until all are
/// done or one fails. The tasks live in a `JoinSet`, so dropping this future (as
/// `Shutdown::unless_stopped` does on a signal) aborts them all, cutting short any transfer in flight: a
/// transaction happens whole or not at all.
pub async fn run_workers(client: &Client, accounts: &[String], tally: &Arc<Tally>) -> Result<()> {
    let accounts = Arc::new(accounts.to_vec());
    let mut running = JoinSet::new();
    for number in 0..tally.workers {
        // A clone of the client shares its connection.
        let (client, accounts, tally) = (client.clone(), Arc::clone(&accounts), Arc::clone(tally));
        running.spawn(worker(client, accounts, number, tally));
    }
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context("a worker failed")),
            Err(e) => bail!("a worker stopped: {e}"),
        }
    }
    Ok(())
}

/// One worker of step 3: `transfers` transfers of a random amount between two random accounts, each with
/// `txn::transfer` (src/lib.rs).
async fn worker(
    mut client: Client,
    accounts: Arc<Vec<String>>,
    number: u32,
    tally: Arc<Tally>,
) -> Result<()> {
    let mut random = XorShift::seeded(number);
    let count = accounts.len() as u64;
    for _ in 0..tally.transfers {
        let from = random.below(count);
        let to = (from + 1 + random.below(count - 1)) % count; // any account but `from`
        let amount = 1 + random.below(MAX_AMOUNT);
        let (from, to) = (&accounts[from as usize], &accounts[to as usize]);
        let done = txn::transfer(&mut client, from, to, amount).await?;
        tally
            .conflicts
            .fetch_add(u64::from(done.attempts() - 1), Ordering::Relaxed);
        match done {
            txn::Transfer::Moved { .. } => tally.moved.fetch_add(1, Ordering::Relaxed),
            txn::Transfer::Insufficient { .. } => tally.short.fetch_add(1, Ordering::Relaxed),
        };
    }
    Ok(())
}

/// A tiny random number generator (xorshift64): plenty to pick accounts and amounts for a demo, without a
/// `rand` dependency. Seeded from the clock and the worker's number, so that the workers differ from each
/// other and from one run to the next.
struct XorShift(u64);

impl XorShift {
    fn seeded(worker: u32) -> XorShift {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Spread the worker numbers over all 64 bits (an odd constant: the golden ratio), and never start
        // at 0, where xorshift would stay.
        let spread = (u64::from(worker) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        XorShift((nanos ^ spread) | 1)
    }

    /// A number from 0 to `n - 1`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Prints the balances that one read of every account found, and fails unless they add up to what the
/// accounts were opened with, `opening` each.
pub fn check_total(
    all: &GetResponse,
    prefix: &str,
    accounts: &[String],
    opening: u64,
) -> Result<()> {
    let expected = opening * accounts.len() as u64;
    let mut shown = Vec::with_capacity(accounts.len());
    let mut total = 0;
    for key in accounts {
        let Some(kv) = all.kvs().iter().find(|kv| kv.key() == key.as_bytes()) else {
            bail!("account {key} is gone: another client deleted it");
        };
        let text = String::from_utf8_lossy(kv.value());
        let balance: u64 = text
            .parse()
            .map_err(|e| anyhow!("account {key} holds {text:?}, not a whole number ({e})"))?;
        shown.push(format!("{}={balance}", key.trim_start_matches(prefix)));
        total += balance;
    }
    println!("   balances: {}", shown.join(" "));
    if total != expected {
        bail!(
            "the total is {total}, not {expected}: money was created or lost (did another client write to \
             the accounts under {prefix}?)"
        );
    }
    println!("   total: {total}, as before: each transfer moved money whole, or not at all");
    Ok(())
}

/// Why the clean-up's guards failed, from what its else branch read: which key is gone or was created
/// again.
pub fn what_changed(resp: &TxnResponse, created: &[(String, i64)]) -> String {
    let changed: Vec<String> = created
        .iter()
        .enumerate()
        .filter_map(|(i, (key, ours))| match kv_of(resp, i) {
            None => Some(format!("{key} was deleted by another client")),
            Some(kv) if kv.create_revision() != *ours => Some(format!(
                "{key} was deleted and created again by another client (create revision {}, ours was {ours})",
                kv.create_revision()
            )),
            Some(_) => None,
        })
        .collect();
    if changed.is_empty() {
        "another client changed them while this run was deleting them".into()
    } else {
        changed.join(", ")
    }
}
