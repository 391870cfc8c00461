//! # txn: transactions, put-if-absent and compare-and-swap
//!
//! Beyond the article, and a correction of it: a lease is not "like SETNX", it is an expiry. Put-if-absent is
//! a *transaction* (step 1); the pattern behind it is compare-and-swap (step 2), with which workers move money
//! while the total stays the same (step 3). `--workers 32 --accounts 2`: more conflicts. To copy: src/lib.rs.

mod cli;
mod demo;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use recipes::errors::one_line;
use recipes::shutdown::{ExitBudget, Shutdown};
use txn::{kv_of, revision_of};

/// What each account holds when step 3 opens it, and the most that one transfer moves.
const OPENING_BALANCE: u64 = 100;
const MAX_AMOUNT: u64 = 30;

/// The keys this run created, each with its create revision: step 4 deletes these and nothing else.
type Created = Vec<(String, i64)>;

// One thread: step 3's workers mostly wait for etcd, and their transactions still race at the server.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    // Listen for Ctrl-C / SIGTERM before anything can block, so that a signal always leads to step 4.
    let mut shutdown = Shutdown::listen()?;
    let prefix = args.demo_prefix.as_str();

    // 0. Connect. `dial` checks within --dial-timeout that etcd answers (`Client::connect` is lazy: it
    //    succeeds even when nothing listens). A signal stops it at once: nothing is written yet.
    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout})
    let dialing = etcd_connect::dial(&args.connect, |endpoints, options| {
        Client::connect(endpoints, Some(options))
    });
    let mut client = match shutdown.unless_stopped(dialing).await {
        Ok(client) => client?,
        Err(signal) => {
            println!("{signal}: stopped before connecting");
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());
    demo::refuse_a_used_prefix(&mut client, prefix).await?;

    // Steps 1 and 2 are short and run to the end, so that step 4 knows every key they create; a signal
    // stops the run between steps, or during step 3. The last calls share one budget: see `ExitBudget`.
    let (mut created, mut exit) = (Created::new(), ExitBudget::new(args.connect.dial_timeout));
    let mut steps = put_if_absent(&mut client, prefix, &mut created).await;
    if steps.is_ok() && !demo::stopped_before(2, &mut shutdown).await {
        steps = compare_and_swap(&mut client, prefix, &mut created).await;
        if steps.is_ok() && !demo::stopped_before(3, &mut shutdown).await {
            steps = transfers(&mut client, &args, &mut shutdown, &mut exit, &mut created).await;
        }
    }
    let cleaned = clean_up(&mut client, &mut exit, prefix, &created).await;
    demo::first_error(steps, cleaned)?;
    println!("done: nothing this run wrote is left under {prefix}");
    Ok(())
}

/// 1. Put-if-absent (Redis SETNX), twice. *If* the key's create revision is 0 (no such key) *then* put,
///    *else* get: etcd runs the compare and one branch atomically, so exactly one of any number of clients
///    creates the key, and the else branch tells the others who won, in the same round trip.
async fn put_if_absent(client: &mut Client, prefix: &str, created: &mut Created) -> Result<()> {
    let key = format!("{prefix}greeting");
    println!("1. put-if-absent {key}: one transaction, if its create revision is 0 (no such key) then put, else get");
    for (call, value) in [("first", "hello"), ("second", "bonjour")] {
        // Go: cli.Txn(ctx).If(Compare(CreateRevision(key), "=", 0)).Then(OpPut(key, v)).Else(OpGet(key)).Commit()
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), value, None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = client.txn(txn).await.context("put-if-absent")?;
        if resp.succeeded() {
            let revision = revision_of(&resp); // of the put, the transaction's only write
            created.push((key.clone(), revision));
            println!("   {call} call ({value}): created {key} = {value} at revision {revision}");
            continue;
        }
        let kv = kv_of(&resp, 0).context("the else branch read nothing")?;
        let found = String::from_utf8_lossy(kv.value());
        let (at, version) = (kv.create_revision(), kv.version());
        println!("   {call} call ({value}): not written; {key} already exists: {found} (created at revision {at}, version {version}), read by the same transaction");
    }
    println!("   that is SETNX; a lease only sets an expiry. To reuse it: `txn::put_if_absent` in src/lib.rs");
    Ok(())
}

/// 2. Compare-and-swap: add 1 to a counter without losing anyone else's update. Read the value and its mod
///    revision (of its last write; 0 if absent), and write *only if* the mod revision is still the one read.
///    If another client wrote in between, nothing is written: pause, read again, compute again, try again.
async fn compare_and_swap(client: &mut Client, prefix: &str, created: &mut Created) -> Result<()> {
    let key = format!("{prefix}counter");
    println!("2. compare-and-swap: add 1 to {key}, writing only if its mod revision is still the one read");
    // The pauses of `txn::compare_and_swap`, growing up to a deadline; without their randomness here.
    let mut retries = txn::Retries::new().without_jitter();
    let mut after = String::new();
    loop {
        let attempt = retries.attempts();
        let got = client.get(key.as_str(), None).await.context("read")?;
        let (old, seen, new) = demo::counter(got.kvs(), &key)?;
        println!("   attempt {attempt}{after}: read {old} at mod revision {seen}, so write {new}");
        if attempt == 1 {
            // Make the race happen every time: another client (this run) writes between read and write.
            demo::meanwhile_another_client_puts(client, &key, "10", created).await?;
        }
        // Go: cli.Txn(ctx).If(Compare(ModRevision(key), "=", seen)).Then(OpPut(key, strconv.Itoa(n))).Commit()
        let txn = Txn::new()
            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, seen)])
            .and_then([TxnOp::put(key.as_str(), new.to_string(), None)]);
        let resp = client.txn(txn).await.context("compare-and-swap")?;
        if resp.succeeded() {
            let revision = revision_of(&resp);
            println!("   attempt {attempt}: unchanged since the read, so etcd wrote {key} = {new} (revision {revision})");
            println!("   {attempt} attempts, no update lost: the other client's 10 plus our 1. To reuse it: `txn::compare_and_swap` in src/lib.rs");
            return Ok(());
        }
        println!("   attempt {attempt}: refused, {key} changed since the read (its mod revision is no longer {seen}); nothing written");
        // Pause, *then* read and write at once: a value read before the pause is likely stale after it.
        let pause = retries.pause(&key, "changed since our read").await?;
        after = format!(" (after a {pause:?} pause)");
    }
}

/// 3. Money transfers: many workers at once, each transfer a compare-and-swap over two accounts.
async fn transfers(
    client: &mut Client,
    args: &cli::Args,
    shutdown: &mut Shutdown,
    exit: &mut ExitBudget,
    created: &mut Created,
) -> Result<()> {
    let (prefix, workers, transfers) = (args.demo_prefix.as_str(), args.workers, args.transfers);
    println!("3. transfers: {workers} workers make {transfers} transfers each, of 1 to {MAX_AMOUNT}, between {} accounts", args.accounts);
    // Open them with one put-if-absent transaction, one compare per key: all of them, or none.
    let accounts = demo::open_accounts(client, args, OPENING_BALANCE, created).await?;

    // Each worker moves money with `txn::transfer` (src/lib.rs), step 2's compare-and-swap over two keys:
    // Go: cli.Txn(ctx).If(ModRevision(from) = seen, ModRevision(to) = seen).Then(OpPut(from), OpPut(to))
    // It reads both balances at one revision with two GETs (a read-only txn crashes etcd 3.5.0-3.5.4 when
    // cancelled: etcd #14110). A signal stops all the workers: a transaction happens whole or not at all.
    let tally = Arc::new(demo::Tally::start(workers, transfers));
    let working = demo::run_workers(client, &accounts, &tally);
    let stopped_by = match shutdown.unless_stopped(working).await {
        Ok(done) => done.map(|()| None)?,
        Err(signal) => Some(signal),
    };
    tally.print(stopped_by);

    // Check the total: one range read is a snapshot, all at one revision. Bounded by the exit budget.
    let every_account = GetOptions::new().with_prefix();
    let read = client.get(format!("{prefix}account-"), Some(every_account));
    let all = exit.call("read the balances", read).await?;
    demo::check_total(&all, prefix, &accounts, OPENING_BALANCE)
}

/// 4. Clean up, whatever happened above: delete exactly the keys this run created, in one transaction
///    guarded by their create revisions. If another client deleted one and wrote it again, nothing is
///    deleted, and the else branch reads the keys to say which. (A delete by prefix would take theirs too.)
async fn clean_up(
    client: &mut Client,
    exit: &mut ExitBudget,
    prefix: &str,
    created: &Created,
) -> Result<()> {
    if created.is_empty() {
        return Ok(());
    }
    // Go: cli.Txn(ctx).If(Compare(CreateRevision(k), "=", rev), ...).Then(OpDelete(k), ...).Else(OpGet(k), ...)
    let (mut guards, mut deletes, mut reads) = (vec![], vec![], vec![]);
    for (key, rev) in created {
        let key = key.as_str();
        guards.push(Compare::create_revision(key, CompareOp::Equal, *rev));
        deletes.push(TxnOp::delete(key, None));
        reads.push(TxnOp::get(key, Some(GetOptions::new().with_keys_only())));
    }
    let txn = Txn::new().when(guards).and_then(deletes).or_else(reads);
    // On the way out, also after a failed step or a signal: bounded by the exit budget.
    let what = format!("delete the demo keys under {prefix}");
    let deleted = exit.call(what, client.txn(txn)).await;
    let resp = deleted.map_err(|e| anyhow!("{}; the keys this run wrote stay under {prefix} (`etcdctl del --prefix {prefix}` removes them)", one_line(&e)))?;
    if !resp.succeeded() {
        let why = demo::what_changed(&resp, created);
        bail!("left the demo keys under {prefix} in place: {why}; check them with `etcdctl get --prefix {prefix}`");
    }
    let (count, revision) = (created.len(), revision_of(&resp));
    println!("4. deleted the {count} keys this run created under {prefix}, in one transaction guarded by their create revisions (revision {revision})");
    Ok(())
}
