//! # lock: a distributed lock
//!
//! The article's lock program: two sessions want the lock `/lock`. Session 1 gets it, session 2 waits,
//! session 1 lets go, session 2 gets it. Then it goes further: why the lock key's create revision is a
//! *fencing token*, and what goes wrong when a lock is taken without a lease of your own.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p lock                      # the demo: two sessions in one process
//! cargo run -p lock -- --hold 5          # a contender: wait for /lock, hold it 5 s, release it
//! cargo run -p lock -- --try             # take /lock only if it is free (else exit code 2), hold it 5 s
//! RUST_LOG=debug cargo run -p lock -- --hold 5   # also shows every lease renewal
//! ```
//!
//! The contender (`--hold`, `--try`) is in `src/contender.rs`.
//!
//! Exit codes: 0 done, 1 error, 2 the lock was taken (with `--try`).
//!
//! A *session* is a lease kept alive in the background. The lock key is attached to it, so when the
//! holder dies the lease expires (after `--ttl` seconds) and the lock comes free on its own. Ctrl-C or
//! SIGTERM releases at once.
//!
//! Try next: start `--hold 10` in three terminals and watch them take turns; `etcdctl get --prefix /lock/`
//! in a fourth shows the queue. `kill -9` the holder and time how long the next one waits. Then read
//! `put_if_holder` in `src/lib.rs` to see how a write stays safe when a holder stalls.

mod cli;
mod contender;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LockOptions, SortOrder, SortTarget, Txn,
    TxnOp, WatchOptions,
};
use lock::LockKey;
use log::debug;
use recipes::kept_lease::Session;
use recipes::shutdown::{ExitBudget, Shutdown};

/// How long the demo waits for something etcd should do at once (queue a key, hand over the lock).
const DEMO_TIMEOUT: Duration = Duration::from_secs(10);

/// How a run ended, when it did not fail.
enum Outcome {
    Done,
    /// `--try` found the lock taken.
    Taken,
}

// A few sequential calls plus two small background tasks (the lease renewals, session 2's lock call):
// the single-threaded runtime runs them all while the main task awaits etcd.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    let args = cli::Args::parse_or_exit();
    match run(args).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Taken) => ExitCode::from(cli::EXIT_TAKEN),
        Err(e) => recipes::errors::report(Err(e)),
    }
}

async fn run(args: cli::Args) -> Result<Outcome> {
    // Listen for Ctrl-C / SIGTERM before anything can block, so a signal always leads to a clean release.
    let mut shutdown = Shutdown::listen()?;

    // 0. Connect. Underneath, `etcd_connect::connect` calls `Client::connect(endpoints, options)` and then
    //    asks the server for its `status()` within --dial-timeout, because `Client::connect` is lazy: it
    //    succeeds even when nothing listens. Read crates/etcd-connect/src/lib.rs for the details.
    //    Ctrl-C stops it at once: nothing is held yet, so there is nothing to release.
    let client = tokio::select! {
        client = etcd_connect::connect(&args.connect) => client?,
        signal = shutdown.recv() => {
            println!("{signal}: stopped before connecting");
            return Ok(Outcome::Done);
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // Calls made on the way out (unlock, revoke) share one budget, the dial timeout, so that stopping never
    // hangs on an etcd that stopped answering.
    let mut exit = ExitBudget::new(args.connect.dial_timeout);
    match args.mode() {
        cli::Mode::Demo => demo(client, &args, &mut shutdown, &mut exit).await,
        cli::Mode::Contend { hold, try_once } => {
            contender::contend(client, &args, hold, try_once, &mut shutdown, &mut exit).await
        }
    }
}

/// The article's program: two sessions, one lock.
async fn demo(
    mut client: Client,
    args: &cli::Args,
    shutdown: &mut Shutdown,
    exit: &mut ExitBudget,
) -> Result<Outcome> {
    // Every lease the demo grants, so that each is revoked below whatever happens.
    let mut leases = Vec::new();
    let steps = tokio::select! {
        result = demo_steps(&mut client, &args.name, &args.protected_key, args.ttl, &mut leases) => result,
        signal = shutdown.recv() => {
            println!("{signal}: stopping the demo early");
            Ok(())
        }
    };
    // End the sessions as Go's `session.Close()` does: revoke their leases. (Their renewals stopped when
    // the steps above dropped them.) Revoking deletes every key attached to a lease, so nothing stays
    // locked or queued, even when a step failed halfway.
    let mut revoked = Ok(());
    for &lease in &leases {
        let what = format!("revoke lease {lease:016x}");
        if let Err(e) = exit.call(what, client.lease_revoke(lease)).await {
            revoked = Err(e);
        }
    }
    steps?;
    revoked?;
    // Read back what is left rather than assume it: the demo refused to start with keys under the lock's
    // prefix, but a contender may have joined since.
    let prefix = format!("{}/", args.name);
    let left = exit
        .call(
            format!("count the keys under {prefix}"),
            client.get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_count_only()),
            ),
        )
        .await?;
    let shown: Vec<String> = leases.iter().map(|id| format!("{id:016x}")).collect();
    match left.count() {
        0 => println!(
            "done: leases {} revoked, nothing is left under {prefix}",
            shown.join(" and ")
        ),
        n => println!(
            "done: leases {} revoked; {n} key(s) that are not the demo's are under {prefix}",
            shown.join(" and ")
        ),
    }
    Ok(Outcome::Done)
}

async fn demo_steps(
    client: &mut Client,
    name: &str,
    protected: &str,
    ttl: i64,
    leases: &mut Vec<i64>,
) -> Result<()> {
    // The demo shows session 1 taking the lock at once and session 2 queueing behind it, so it needs a lock
    // nobody else holds or waits for: behind a contender from another terminal (or any key under the
    // prefix, which etcd's lock service counts as one) session 1 would wait for as long as that one holds.
    // Refuse, and say who is there, rather than wait without a word.
    let prefix = format!("{name}/");
    let existing = client
        .get(
            prefix.as_str(),
            Some(queue_order().with_keys_only().with_limit(3)),
        )
        .await
        .with_context(|| format!("check that nobody holds or waits for {name}"))?;
    if existing.count() > 0 {
        let keys: Vec<String> = existing
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect();
        bail!(
            "{prefix} already holds {} key(s) ({}{}): for etcd's lock service someone holds or waits \
             for {name}, and the demo would wait behind them; stop those contenders (or `etcdctl del \
             --prefix {prefix}` if the keys are yours to lose), or run the demo with --name /another-lock",
            existing.count(),
            keys.join(", "),
            if existing.more() { ", ..." } else { "" }
        );
    }

    // The demo writes --protected-key in step 5 and deletes it afterwards. A learner's own key of that name
    // must survive the demo, so refuse to start rather than overwrite it.
    let existing = client
        .get(protected, None)
        .await
        .with_context(|| format!("check that {protected} is free"))?;
    if let Some(kv) = existing.kvs().first() {
        bail!(
            "{protected} already exists (last written at revision {}): the demo writes and deletes \
             that key, so it stops rather than touch data it did not write; delete it first \
             (`etcdctl del {protected}`) if it is yours to lose",
            kv.mod_revision()
        );
    }

    // Sessions. Go's `concurrency.NewSession(client)` grants a lease and renews it in a goroutine for as
    // long as the program runs. etcd-client has no sessions, so we do the same two things ourselves: grant
    // a lease here, then `Session::start` opens its keep-alive stream (`client.lease_keep_alive(id)`) and
    // renews it every TTL/3 in a background task (src/lib.rs). Each lock key a session takes is attached to
    // its lease: if the process dies, the renewals stop and etcd deletes the key one TTL later.
    // Two sessions, two leases: two processes would have one each.
    let grant1 = client
        .lease_grant(ttl, None)
        .await
        .context("grant session 1's lease")?;
    leases.push(grant1.id());
    let session1 = Session::start(client, grant1.id(), grant1.ttl()).await?;
    let grant2 = client
        .lease_grant(ttl, None)
        .await
        .context("grant session 2's lease")?;
    leases.push(grant2.id());
    let session2 = Session::start(client, grant2.id(), grant2.ttl()).await?;
    println!(
        "session 1 has lease {:016x}, session 2 has lease {:016x} (ttl {}s, renewed every {:.1}s)",
        session1.lease_id(),
        session2.lease_id(),
        session1.ttl(),
        session1.ttl() as f64 / 3.0
    );

    // 1. Session 1 asks for the lock, on its lease (Go: `concurrency.NewMutex(session1, "/lock").Lock`).
    //    etcd's lock service writes the key `<name>/<lease ID in hex>` attached to that lease, and answers
    //    once that key is the oldest under `<name>/`. Nobody else is queued, so that is at once.
    //    Should a contender have queued since the check above, the call would wait for it: bound it, and
    //    say who holds the lock.
    let lock1 = client.lock(
        name,
        Some(LockOptions::new().with_lease(session1.lease_id())),
    );
    let locked1 = match tokio::time::timeout(DEMO_TIMEOUT, lock1).await {
        Ok(locked) => locked.with_context(|| format!("session 1: lock {name}"))?,
        Err(_) => {
            let holder = client
                .get(prefix.as_str(), Some(queue_order().with_limit(1)))
                .await
                .with_context(|| format!("ask who holds {name}"))?;
            let who = holder.kvs().first().map_or_else(
                || "nobody".to_string(),
                |kv| String::from_utf8_lossy(kv.key()).into_owned(),
            );
            bail!(
                "session 1 did not get {name} within {DEMO_TIMEOUT:?}: {who} holds it (a contender that \
                 started after the demo checked); stop it and run the demo again"
            );
        }
    };
    let key1 = String::from_utf8_lossy(locked1.key()).into_owned();
    //    The reply names the key but not its create revision, the holder's fencing token (step 5). Its
    //    header revision is when the lock was granted, which can be later. So read the key back.
    let got = client
        .get(key1.as_str(), None)
        .await
        .with_context(|| format!("get {key1}"))?;
    let Some(kv) = got.kvs().first() else {
        bail!("{key1} vanished right after it was granted: did its lease expire?");
    };
    let held1 = LockKey {
        create_revision: kv.create_revision(),
        key: key1,
    };
    println!(
        "1. session 1 acquired {name}: its key {} was created at revision {}",
        held1.key, held1.create_revision
    );
    println!(
        "   (a lock key is {name}/ and the lease ID in hex, which etcd writes without the leading zeros etcdctl shows)"
    );

    // 2. Session 2 asks too. Its lock call blocks until session 1 lets go, so it runs in a task of its
    //    own, like the article's goroutine; awaiting the task's handle plays the part of its channel.
    let lease2 = session2.lease_id();
    let mut client2 = client.clone();
    let name2 = name.to_string();
    let waiting = tokio::spawn(async move {
        client2
            .lock(name2, Some(LockOptions::new().with_lease(lease2)))
            .await
    });
    //    A blocked lock call gives no sign that it reached etcd; its key appearing under `<name>/` does.
    //    So read the queue (sorted by create revision: that order *is* the queue, holder first), and if
    //    session 2's key is not there yet, watch the prefix from the revision right after that read until
    //    its PUT arrives. Starting at the read's revision + 1 means no write can slip in between.
    let key2 = format!("{name}/{lease2:x}");
    let queue = client
        .get(prefix.as_str(), Some(queue_order()))
        .await
        .with_context(|| format!("list the queue under {prefix}"))?;
    let Some(holder) = queue.kvs().first() else {
        bail!("the queue under {prefix} is empty although session 1 holds {name}");
    };
    let queued2 = match queue.kvs().iter().find(|kv| kv.key() == key2.as_bytes()) {
        Some(kv) => kv.create_revision(),
        None => {
            let from = queue.header().map_or(0, |h| h.revision()) + 1;
            debug!("{key2} is not queued yet: watching {prefix} from revision {from}");
            let mut watch = client
                .watch_client()
                .max_decoding_message_size(recipes::resuming_watch::MAX_RESPONSE)
                .watch(
                    prefix.as_str(),
                    Some(WatchOptions::new().with_prefix().with_start_revision(from)),
                )
                .await
                .with_context(|| format!("watch {prefix}"))?;
            let put_of_key2 = async {
                loop {
                    let Some(resp) = watch.message().await? else {
                        bail!("etcd closed the watch on {prefix}");
                    };
                    if resp.canceled() {
                        bail!(
                            "etcd cancelled the watch on {prefix}: {}",
                            resp.cancel_reason()
                        );
                    }
                    let put = resp
                        .events()
                        .iter()
                        .filter(|event| event.event_type() == EventType::Put)
                        .filter_map(|event| event.kv())
                        .find(|kv| kv.key() == key2.as_bytes());
                    if let Some(kv) = put {
                        return Ok(kv.create_revision());
                    }
                }
            };
            // Dropping `watch` at the end of this block closes the watch.
            tokio::time::timeout(DEMO_TIMEOUT, put_of_key2)
                .await
                .with_context(|| {
                    format!("{key2} did not appear under {prefix} within {DEMO_TIMEOUT:?}")
                })??
        }
    };
    println!(
        "2. session 2 is waiting for {name}: its key {key2} (revision {queued2}) is queued behind {} (revision {})",
        String::from_utf8_lossy(holder.key()),
        holder.create_revision()
    );

    // 3. Session 1 unlocks (Go: `myMu1.Unlock`): etcd deletes its key, so session 2's key is now the
    //    oldest, and its lock call returns.
    client
        .unlock(held1.key.as_str())
        .await
        .with_context(|| format!("unlock {}", held1.key))?;
    println!("3. session 1 released {name}: {} is deleted", held1.key);

    // 4. Session 2's lock call returns. Its fencing token is the create revision its key got when it
    //    queued in step 2: waiting does not change it.
    let locked2 = tokio::time::timeout(DEMO_TIMEOUT, waiting)
        .await
        .with_context(|| format!("session 2 did not get {name} within {DEMO_TIMEOUT:?}"))?
        .context("session 2's lock task failed")?
        .with_context(|| format!("session 2: lock {name}"))?;
    let held2 = LockKey {
        key: String::from_utf8_lossy(locked2.key()).into_owned(),
        create_revision: queued2,
    };
    if held2.key != key2 {
        bail!("session 2 was granted {} instead of {key2}", held2.key);
    }
    println!(
        "4. session 2 acquired {name}: its key {} keeps revision {} from when it queued",
        held2.key, held2.create_revision
    );

    println!("-- beyond the article --");

    // 5. Fencing: a holder's create revision is its token. A late write from session 1 (think: it was
    //    frozen by a GC pause while its lock expired) carries an old token, and etcd refuses it in the
    //    same transaction as the write. `put_if_holder` (src/lib.rs) is that transaction.
    let current = lock::put_if_holder(client, &held2, protected, "from session 2").await?;
    let stale = lock::put_if_holder(client, &held1, protected, "from session 1").await?;
    println!(
        "5. fenced writes to {protected}: session 2 (token {}) was {}, session 1's late one (token {}) was {}",
        held2.create_revision,
        accepted(current.is_some()),
        held1.create_revision,
        accepted(stale.is_some())
    );
    //    Clean up, but only what this run wrote: delete the key only if it still holds our write, that is if
    //    its mod revision is still the revision of session 2's write, checked in the same transaction.
    if let Some(written_at) = current {
        let ours = Compare::mod_revision(protected, CompareOp::Equal, written_at);
        let cleaned = client
            .txn(
                Txn::new()
                    .when([ours])
                    .and_then([TxnOp::delete(protected, None)]),
            )
            .await
            .with_context(|| format!("delete {protected}"))?;
        if !cleaned.succeeded() {
            println!(
                "   left {protected} in place: someone else wrote it after revision {written_at}"
            );
        }
    }
    client
        .unlock(held2.key.as_str())
        .await
        .with_context(|| format!("unlock {}", held2.key))?;
    println!("   session 2 released {name}");

    // 6. The pitfall: lock without a lease. It works, which is the trap: etcd's lock service then grants a
    //    lease of its own (60 s, the default of Go's `concurrency.NewSession`) that nobody renews, so the
    //    lock silently disappears a minute later, whether or not its holder has finished.
    let orphan = client
        .lock(name, None)
        .await
        .with_context(|| format!("lock {name} without a lease"))?;
    let orphan_key = String::from_utf8_lossy(orphan.key()).into_owned();
    //    Which lease keeps the key alive? The key says, and `lease_time_to_live` says for how long.
    let got = client
        .get(orphan_key.as_str(), None)
        .await
        .with_context(|| format!("get {orphan_key}"))?;
    let Some(lease) = got.kvs().first().map(|kv| kv.lease()).filter(|&id| id != 0) else {
        bail!("{orphan_key} is gone or has no lease right after it was granted");
    };
    let left = client
        .lease_time_to_live(lease, None)
        .await
        .with_context(|| format!("ask etcd about lease {lease:016x}"))?;
    println!(
        "6. pitfall: locked {name} without a lease: etcd attached its own lease {lease:016x} (ttl {}s) that nobody \
renews, so this lock vanishes in {}s even if its holder is still busy; always lock with a kept-alive session",
        left.granted_ttl(),
        left.ttl()
    );
    //    Revoke that lease rather than only unlocking: unlocking deletes the key, but the lease would linger
    //    for a minute.
    client
        .lease_revoke(lease)
        .await
        .with_context(|| format!("revoke lease {lease:016x}"))?;
    println!("   revoked lease {lease:016x}, which also deleted {orphan_key}");
    Ok(())
}

/// The keys under a prefix in the order of the lock's queue: by create revision, the holder first.
fn queue_order() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
}

fn accepted(written: bool) -> &'static str {
    if written {
        "accepted"
    } else {
        "rejected"
    }
}
