//! # txn: transactions, put-if-absent and compare-and-swap
//!
//! Beyond the article, and a correction of it: the article says a lease works "like SETNX". It does not:
//! a lease is an expiry time and never stops another client from writing a key. "Put only if absent"
//! is a *transaction*: `if create_revision(key) == 0 then put else get`, which etcd evaluates atomically.
//! This program shows that transaction, then the pattern behind it, compare-and-swap (write only if the
//! key is still as you read it, else retry), then many tasks moving money between accounts with it while
//! the total stays exactly the same.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p txn
//! cargo run -p txn -- --workers 32 --accounts 2    # more workers on fewer accounts: more conflicts
//! RUST_LOG=debug cargo run -p txn                  # also every lost race and the pause before the retry
//! ```
//!
//! Every key goes under `--demo-prefix` (default `/txn-demo/`), which must be empty; at the end, also
//! after Ctrl-C or SIGTERM, the run deletes exactly the keys it created there.
//!
//! Try next: `cargo run -p watch -- --key /txn-demo/account- --prefix` in another terminal while this
//! runs: the two PUTs of each transfer carry one revision, because one transaction is one revision. Then
//! read `put_if_absent`, `compare_and_swap` and `transfer` in `src/lib.rs`: the same transactions, ready
//! to copy.

mod cli;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use recipes::shutdown::{ExitBudget, Shutdown};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What each account holds when step 3 opens it.
const OPENING_BALANCE: u64 = 100;

/// The largest amount one transfer moves (the smallest is 1).
const MAX_AMOUNT: u64 = 30;

// The workers of step 3 are tasks on this one thread: each spends nearly all its time waiting for etcd,
// and their transactions still interleave at the server, which is where the conflicts happen.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    // Listen for Ctrl-C / SIGTERM before anything can block, so a signal always leads to the clean-up.
    let mut shutdown = Shutdown::listen()?;
    let prefix = &args.demo_prefix;

    // 0. Connect. Underneath, `etcd_connect::connect` calls `Client::connect(endpoints, options)` and then
    //    asks the server for its `status()` within --dial-timeout, because `Client::connect` is lazy: it
    //    succeeds even when nothing listens. Read crates/etcd-connect/src/lib.rs for the details.
    //    Ctrl-C stops it at once: nothing is written yet.
    let mut client = tokio::select! {
        client = etcd_connect::connect(&args.connect) => client?,
        signal = shutdown.recv() => {
            println!("{signal}: stopped before connecting");
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    //    The demo prefix must be empty, because step 4 cleans up after us and must only ever delete what
    //    this run wrote. `with_keys_only` and `with_limit` keep the check cheap on a busy prefix.
    let existing = client
        .get(
            prefix.as_str(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(3),
            ),
        )
        .await
        .with_context(|| format!("check that {prefix} is empty"))?;
    if existing.count() > 0 {
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

    // Every key this run creates, with its create revision: step 4 deletes these and nothing else.
    let mut created: Vec<(String, i64)> = Vec::new();
    // The last calls of the run (reading the balances, the clean-up) share one budget: see `ExitBudget`.
    let mut exit = ExitBudget::new(args.connect.dial_timeout);
    let steps = steps(&mut client, &args, &mut shutdown, &mut exit, &mut created).await;

    // 4. Clean up, whatever happened above: delete exactly the keys this run created, in one transaction
    //    whose guards check that each still has the create revision we gave it. A key that another client
    //    deleted and wrote again has a new create revision, so the guards fail and nothing is deleted; the
    //    else branch then reads the keys, to say which one. (A plain `delete(prefix, with_prefix())` would
    //    also take any key someone else put under the prefix meanwhile.) This runs on the way out, also
    //    after Ctrl-C or a failed step, so it is bounded by the exit budget.
    let cleaned = if created.is_empty() {
        Ok(())
    } else {
        let guards: Vec<Compare> = created
            .iter()
            .map(|(key, rev)| Compare::create_revision(key.as_str(), CompareOp::Equal, *rev))
            .collect();
        let deletes: Vec<TxnOp> = created
            .iter()
            .map(|(key, _)| TxnOp::delete(key.as_str(), None))
            .collect();
        let reads: Vec<TxnOp> = created
            .iter()
            .map(|(key, _)| TxnOp::get(key.as_str(), Some(GetOptions::new().with_keys_only())))
            .collect();
        let cleanup = client.txn(Txn::new().when(guards).and_then(deletes).or_else(reads));
        match exit.call(format!("delete the demo keys under {prefix}"), cleanup).await {
            Ok(resp) if resp.succeeded() => {
                println!(
                    "4. deleted the {} keys this run created under {prefix}, in one transaction guarded by \
                     their create revisions (revision {})",
                    created.len(),
                    revision_of(&resp)
                );
                Ok(())
            }
            Ok(resp) => Err(anyhow!(
                "left the demo keys under {prefix} in place: {}; check them with `etcdctl get --prefix {prefix}`",
                what_changed(&resp, &created)
            )),
            Err(e) => Err(anyhow!(
                "{}; the keys this run wrote stay under {prefix} (`etcdctl del --prefix {prefix}` removes them)",
                recipes::errors::one_line(&e)
            )),
        }
    };
    match (steps, cleaned) {
        (Ok(()), Ok(())) => {
            println!("done: nothing this run wrote is left under {prefix}");
            Ok(())
        }
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(e), Err(cleanup)) => Err(anyhow!(
            "{}; and then: {}",
            recipes::errors::one_line(&e),
            recipes::errors::one_line(&cleanup)
        )),
    }
}

/// Steps 1 to 3. Each key created is added to `created` as soon as etcd confirms it, for step 4.
async fn steps(
    client: &mut Client,
    args: &cli::Args,
    shutdown: &mut Shutdown,
    exit: &mut ExitBudget,
    created: &mut Vec<(String, i64)>,
) -> Result<()> {
    let prefix = &args.demo_prefix;

    // 1. Put-if-absent (Redis SETNX), called twice with different values. One transaction: *if* the key's
    //    create revision is 0 (etcd's way of saying it does not exist) *then* put, *else* get. etcd
    //    evaluates the compare and runs one branch atomically, so among any number of clients doing this
    //    at once exactly one creates the key. The else branch reads the key in the same transaction: the
    //    loser learns who won without a second request that could race with yet another write.
    let greeting = format!("{prefix}greeting");
    println!(
        "1. put-if-absent {greeting}: one transaction, if its create revision is 0 (no such key) then put, else get"
    );
    for (call, value) in [("first", "hello"), ("second", "bonjour")] {
        let resp = client
            .txn(
                Txn::new()
                    .when([Compare::create_revision(
                        greeting.as_str(),
                        CompareOp::Equal,
                        0,
                    )])
                    .and_then([TxnOp::put(greeting.as_str(), value, None)])
                    .or_else([TxnOp::get(greeting.as_str(), None)]),
            )
            .await
            .with_context(|| format!("put {greeting} if absent"))?;
        if resp.succeeded() {
            // The put was the transaction's only write: it happened at the revision the reply reports.
            let revision = revision_of(&resp);
            created.push((greeting.clone(), revision));
            println!(
                "   {call} call ({value}): created {greeting} = {value} at revision {revision}"
            );
        } else {
            let Some(kv) = kv_of(&resp, 0) else {
                bail!("{greeting} exists, yet the transaction that found it read nothing");
            };
            println!(
                "   {call} call ({value}): not written; {greeting} already exists: {} (created at revision \
                 {}, version {}), read by the same transaction",
                String::from_utf8_lossy(kv.value()),
                kv.create_revision(),
                kv.version()
            );
        }
    }
    println!(
        "   that is SETNX; a lease only sets an expiry. To reuse it: `txn::put_if_absent` in src/lib.rs"
    );

    if let Some(signal) = pending(shutdown).await {
        println!("{signal}: stopping before step 2");
        return Ok(());
    }

    // 2. Compare-and-swap: add 1 to a counter without losing anyone else's update. Read the value and its
    //    mod revision (the revision of the key's last write, 0 for a key that does not exist), compute the
    //    new value, and write it in a transaction *only if* the mod revision is still the one read. If
    //    another client wrote in between, the compare fails and nothing is written: pause, read again,
    //    compute again from what is there now, and try again.
    let counter = format!("{prefix}counter");
    println!(
        "2. compare-and-swap: add 1 to {counter}, writing only if its mod revision is still the one read"
    );
    let mut pause = txn::FIRST_PAUSE;
    let started = Instant::now();
    let mut waited = None;
    let mut attempt = 1;
    loop {
        let got = client
            .get(counter.as_str(), None)
            .await
            .with_context(|| format!("read {counter}"))?;
        let current = got.kvs().first();
        let seen = current.map_or(0, KeyValue::mod_revision);
        let (shown, old) = match current {
            None => ("(absent, counts as 0)".to_string(), 0),
            Some(kv) => {
                let text = String::from_utf8_lossy(kv.value()).into_owned();
                let old: u64 = text
                    .parse()
                    .map_err(|e| anyhow!("{counter} holds {text:?}, not a whole number ({e})"))?;
                (text, old)
            }
        };
        let new = old + 1;
        let after = waited.map_or(String::new(), |p: Duration| {
            format!(" (after a {p:?} pause)")
        });
        println!(
            "   attempt {attempt}{after}: read {shown} at mod revision {seen}, so write {new}"
        );
        if attempt == 1 {
            //    Play another client, to make the race happen every time: it writes the key between our
            //    read and our write. (This run is that client; the put also creates the key, so step 4
            //    deletes it.)
            let other = client
                .put(counter.as_str(), "10", None)
                .await
                .with_context(|| format!("put {counter}"))?;
            let revision = other.header().map_or(0, |h| h.revision());
            created.push((counter.clone(), revision));
            println!("   meanwhile another client puts {counter} = 10 (revision {revision})");
        }
        let resp = client
            .txn(
                Txn::new()
                    .when([Compare::mod_revision(
                        counter.as_str(),
                        CompareOp::Equal,
                        seen,
                    )])
                    .and_then([TxnOp::put(counter.as_str(), new.to_string(), None)]),
            )
            .await
            .with_context(|| format!("write {counter} if unchanged since revision {seen}"))?;
        if resp.succeeded() {
            println!(
                "   attempt {attempt}: unchanged since the read, so etcd wrote {counter} = {new} (revision {})",
                revision_of(&resp)
            );
            break;
        }
        println!(
            "   attempt {attempt}: refused, {counter} changed since the read (its mod revision is no longer \
             {seen}); nothing written"
        );
        if started.elapsed() >= txn::GIVE_UP_AFTER {
            bail!(
                "{counter} changed under each of {attempt} attempts in {:?}: too many writers for \
                 compare-and-swap",
                txn::GIVE_UP_AFTER
            );
        }
        //    Pause before the next attempt, longer after each lost race (capped), so that writers that keep
        //    colliding spread out; `txn::compare_and_swap` waits a random time up to this limit, so that
        //    they also spread apart from each other. Then read again: pause first, read, and write at once.
        //    Retrying from a value read before the pause (say, by an else branch of the refused
        //    transaction) would write from a value as old as the pause, which under many writers has
        //    almost always changed again: the retries would lose over and over.
        tokio::time::sleep(pause).await;
        waited = Some(pause);
        pause = (pause * 2).min(txn::MAX_PAUSE);
        attempt += 1;
    }
    println!(
        "   {attempt} attempts, no update lost: the other client's 10 plus our 1. To reuse it: \
         `txn::compare_and_swap` in src/lib.rs"
    );

    if let Some(signal) = pending(shutdown).await {
        println!("{signal}: stopping before step 3");
        return Ok(());
    }

    // 3. Money transfers: many workers at once, each transfer touching two accounts.
    let (workers, transfers, count) = (args.workers, args.transfers, args.accounts);
    println!(
        "3. transfers: {workers} workers make {transfers} transfers each, of 1 to {MAX_AMOUNT}, between {count} accounts"
    );
    //    Open the accounts: put-if-absent over all of them at once, one compare per key. Either every
    //    account is created, or (if any already exists) none is, and the else branch reads which exist.
    let accounts: Arc<Vec<String>> = Arc::new(
        (1..=count)
            .map(|i| format!("{prefix}account-{i}"))
            .collect(),
    );
    let absent: Vec<Compare> = accounts
        .iter()
        .map(|key| Compare::create_revision(key.as_str(), CompareOp::Equal, 0))
        .collect();
    let opens: Vec<TxnOp> = accounts
        .iter()
        .map(|key| TxnOp::put(key.as_str(), OPENING_BALANCE.to_string(), None))
        .collect();
    let reads: Vec<TxnOp> = accounts
        .iter()
        .map(|key| TxnOp::get(key.as_str(), Some(GetOptions::new().with_keys_only())))
        .collect();
    let opened = client
        .txn(Txn::new().when(absent).and_then(opens).or_else(reads))
        .await
        .with_context(|| format!("open {count} accounts under {prefix}"))?;
    if !opened.succeeded() {
        let taken: Vec<String> = (0..accounts.len())
            .filter_map(|i| kv_of(&opened, i))
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect();
        bail!(
            "opened no account: another client wrote {} since this run found {prefix} empty",
            taken.join(", ")
        );
    }
    let revision = revision_of(&opened);
    created.extend(accounts.iter().map(|key| (key.clone(), revision)));
    let expected = OPENING_BALANCE * u64::from(count);
    println!(
        "   opened {} .. {} with {OPENING_BALANCE} each, in one put-if-absent transaction (revision {revision}): total {expected}",
        accounts[0],
        accounts[accounts.len() - 1]
    );

    //    Start the workers, each a task with its own handle on the client (a clone shares the connection).
    //    Each transfer is `txn::transfer` (src/lib.rs): it reads both balances at one revision, then
    //    sends
    //        client.txn(Txn::new()
    //            .when([mod_revision(from) == as read, mod_revision(to) == as read])
    //            .and_then([put(from, balance - amount), put(to, balance + amount)]))
    //    and, when another worker got there first, pauses (a random time whose limit doubles with each
    //    lost race), then reads both again and tries again. It moves nothing if the source holds less
    //    than the amount.
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut running = JoinSet::new();
    for number in 0..workers {
        running.spawn(worker(
            client.clone(),
            Arc::clone(&accounts),
            transfers,
            XorShift::seeded(number),
            Arc::clone(&tally),
        ));
    }
    //    Wait for all of them. A worker's error ends the run (dropping the set aborts the others); Ctrl-C
    //    stops them all, cutting short any transfer in flight: a transaction happens whole or not at all.
    let stopped_by = loop {
        tokio::select! {
            joined = running.join_next() => match joined {
                None => break None,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(e.context("a worker failed")),
                Some(Err(e)) => bail!("a worker stopped: {e}"),
            },
            signal = shutdown.recv() => {
                running.abort_all();
                break Some(signal);
            }
        }
    };
    let took = started.elapsed();
    let moved = tally.moved.load(Ordering::Relaxed);
    let short = tally.short.load(Ordering::Relaxed);
    let conflicts = tally.conflicts.load(Ordering::Relaxed);
    let planned = u64::from(workers) * u64::from(transfers);
    match stopped_by {
        None => println!(
            "   {} transfers in {took:.1?}: {moved} moved money, {short} found too little in the source; \
             {conflicts} conflicts retried",
            moved + short
        ),
        Some(signal) => println!(
            "   {signal}: stopped the workers after {} of {planned} transfers ({moved} moved money, {short} \
             found too little; {conflicts} conflicts retried)",
            moved + short
        ),
    }

    //    Check the total: read every account at one revision (one range read is a snapshot) and add up.
    //    After Ctrl-C this is on the way out, so it is bounded by the exit budget.
    let read = client.get(
        format!("{prefix}account-"),
        Some(GetOptions::new().with_prefix()),
    );
    let all = exit.call("read the balances", read).await?;
    let mut balances = Vec::with_capacity(accounts.len());
    for key in accounts.iter() {
        let Some(kv) = all.kvs().iter().find(|kv| kv.key() == key.as_bytes()) else {
            bail!("account {key} is gone: another client deleted it");
        };
        let text = String::from_utf8_lossy(kv.value());
        let balance: u64 = text
            .parse()
            .map_err(|e| anyhow!("account {key} holds {text:?}, not a whole number ({e})"))?;
        balances.push((key.trim_start_matches(prefix.as_str()), balance));
    }
    let shown: Vec<String> = balances
        .iter()
        .map(|(name, balance)| format!("{name}={balance}"))
        .collect();
    println!("   balances: {}", shown.join(" "));
    let total: u64 = balances.iter().map(|(_, balance)| balance).sum();
    if total != expected {
        bail!(
            "the total is {total}, not {expected}: money was created or lost (did another client write to \
             the accounts under {prefix}?)"
        );
    }
    println!("   total: {total}, as before: each transfer moved money whole, or not at all");
    Ok(())
}

/// What the workers did, counted across all of them (also when Ctrl-C stops them halfway).
#[derive(Default)]
struct Tally {
    /// Transfers that moved money.
    moved: AtomicU64,
    /// Transfers whose source held less than the amount: nothing moved.
    short: AtomicU64,
    /// Transactions refused because another worker wrote one of the two accounts first, then retried.
    conflicts: AtomicU64,
}

/// One worker of step 3: `transfers` transfers of a random amount between two random accounts.
async fn worker(
    mut client: Client,
    accounts: Arc<Vec<String>>,
    transfers: u32,
    mut random: XorShift,
    tally: Arc<Tally>,
) -> Result<()> {
    let count = accounts.len() as u64;
    for _ in 0..transfers {
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

/// A Ctrl-C or SIGTERM that has arrived, without waiting for one: the short steps 1 and 2 run to the end
/// (so that every key they create is known to step 4), and look for a signal between steps. tokio's
/// `timeout` polls the future before looking at the clock, so a zero timeout asks "is it ready now?".
async fn pending(shutdown: &mut Shutdown) -> Option<&'static str> {
    tokio::time::timeout(Duration::ZERO, shutdown.recv())
        .await
        .ok()
}

/// The first key-value read by the `index`-th operation of a transaction, if that was a GET that found one.
fn kv_of(resp: &TxnResponse, index: usize) -> Option<KeyValue> {
    match resp.op_responses().get(index) {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().cloned(),
        _ => None,
    }
}

/// The store revision a reply reports: after a transaction that wrote, the revision of its writes.
fn revision_of(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

/// Why step 4's guards failed, from what its else branch read: which key is gone or was created again.
fn what_changed(resp: &TxnResponse, created: &[(String, i64)]) -> String {
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
