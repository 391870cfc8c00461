//! What the demo in `main.rs` needs besides its lesson: the checks before it starts (it neither waits
//! behind someone else's lock nor overwrites someone else's key), bounded waits that say who is in the way,
//! proof that session 2 really queued, and a clean-up that deletes only what the demo wrote.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LockResponse, SortOrder, SortTarget, Txn, TxnOp,
};
use lock::LockKey;
use log::debug;
use recipes::shutdown::ExitBudget;
use tokio::task::JoinHandle;

/// How long the demo waits for something etcd should do at once (queue a key, hand over the lock).
const DEMO_TIMEOUT: Duration = Duration::from_secs(10);

type Locked = std::result::Result<LockResponse, etcd_client::Error>;

/// Refuses to start when someone holds or waits for the lock `name` (session 1 would wait behind them,
/// without a word), or when `protected` exists (step 5 writes and deletes it: it may be a learner's own).
pub async fn nobody_is_there(client: &mut Client, name: &str, protected: &str) -> Result<()> {
    // Any key under the prefix counts as a contender for etcd's lock service.
    let prefix = format!("{name}/");
    let existing = client
        .get(
            prefix.as_str(),
            Some(queue_order().with_keys_only().with_limit(3)),
        )
        .await
        .with_context(|| format!("check that nobody holds or waits for {name}"))?;
    if existing.count() > 0 {
        let keys: Vec<String> = existing.kvs().iter().map(|kv| text(kv.key())).collect();
        bail!(
            "{prefix} already holds {} key(s) ({}{}): for etcd's lock service someone holds or waits \
             for {name}, and the demo would wait behind them; stop those contenders (or `etcdctl del \
             --prefix {prefix}` if the keys are yours to lose), or run the demo with --name /another-lock",
            existing.count(),
            keys.join(", "),
            if existing.more() { ", ..." } else { "" }
        );
    }
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
    Ok(())
}

/// Session 1's lock call, bounded: should a contender have queued since [`nobody_is_there`], the call
/// would wait for it. Then say who holds the lock.
pub async fn or_say_who_holds(
    mut client: Client,
    name: &str,
    lock: impl std::future::Future<Output = Locked>,
) -> Result<Locked> {
    if let Ok(locked) = tokio::time::timeout(DEMO_TIMEOUT, lock).await {
        return Ok(locked);
    }
    let holder = client
        .get(format!("{name}/"), Some(queue_order().with_limit(1)))
        .await
        .with_context(|| format!("ask who holds {name}"))?;
    let who = holder
        .kvs()
        .first()
        .map_or_else(|| "nobody".to_string(), |kv| text(kv.key()));
    bail!(
        "session 1 did not get {name} within {DEMO_TIMEOUT:?}: {who} holds it (a contender that \
         started after the demo checked); stop it and run the demo again"
    )
}

/// Session 2's lock call, run in a task, once session 1 has let go: it must grant the key that queued.
/// That key's create revision, its fencing token, does not change while it waits.
pub async fn granted(waiting: JoinHandle<Locked>, name: &str, queued: &LockKey) -> Result<()> {
    let key = &queued.key;
    let locked = tokio::time::timeout(DEMO_TIMEOUT, waiting)
        .await
        .with_context(|| format!("session 2 did not get {name} within {DEMO_TIMEOUT:?}"))?
        .context("session 2's lock task failed")?
        .with_context(|| format!("session 2: lock {name}"))?;
    if locked.key() != key.as_bytes() {
        bail!(
            "session 2 was granted {} instead of {key}",
            text(locked.key())
        );
    }
    Ok(())
}

/// Waits until the lock call of `lease` is queued under `<name>/`, and returns its key and the holder's.
///
/// A blocked lock call gives no sign that it reached etcd; its key appearing under `<name>/` does. So read
/// the queue (sorted by create revision: that order *is* the queue, holder first), and if our key is not
/// there yet, watch the prefix from the revision right after that read until its PUT arrives. Starting at
/// the read's revision + 1 means no write can slip in between.
pub async fn queued(client: &mut Client, name: &str, lease: i64) -> Result<(LockKey, LockKey)> {
    let (prefix, key) = (format!("{name}/"), format!("{name}/{lease:x}"));
    let queue = client
        .get(prefix.as_str(), Some(queue_order()))
        .await
        .with_context(|| format!("list the queue under {prefix}"))?;
    let Some(holder) = queue.kvs().first().map(lock_key) else {
        bail!("the queue under {prefix} is empty although session 1 holds {name}");
    };
    if let Some(kv) = queue.kvs().iter().find(|kv| kv.key() == key.as_bytes()) {
        return Ok((lock_key(kv), holder));
    }
    let from = queue.header().map_or(0, |h| h.revision()) + 1;
    debug!("{key} is not queued yet: watching {prefix} from revision {from}");
    let put = tokio::time::timeout(DEMO_TIMEOUT, put_of(client, &prefix, &key, from)).await;
    let put = put
        .with_context(|| format!("{key} did not appear under {prefix} within {DEMO_TIMEOUT:?}"))?;
    Ok((put?, holder))
}

/// The PUT of `key`, watched for under `prefix` from revision `from`.
async fn put_of(client: &mut Client, prefix: &str, key: &str, from: i64) -> Result<LockKey> {
    let kv = recipes::resuming_watch::first_put(client, prefix, key, from).await?;
    Ok(lock_key(&kv))
}

/// The key a lock call took, and the lease that keeps it alive, as the key says.
pub async fn key_and_lease(client: &mut Client, locked: &LockResponse) -> Result<(String, i64)> {
    let key = text(locked.key());
    let got = client
        .get(key.as_str(), None)
        .await
        .with_context(|| format!("get {key}"))?;
    match got.kvs().first().map(|kv| kv.lease()) {
        Some(lease) if lease != 0 => Ok((key, lease)),
        _ => bail!("{key} is gone or has no lease right after it was granted"),
    }
}

/// Deletes `key` only if it still holds the write the demo made at revision `written_at` (its mod
/// revision, checked in the same transaction): a key someone else wrote meanwhile stays.
pub async fn delete_if_unchanged(
    client: &mut Client,
    key: &str,
    written_at: Option<i64>,
) -> Result<()> {
    let Some(written_at) = written_at else {
        return Ok(());
    };
    let ours = Compare::mod_revision(key, CompareOp::Equal, written_at);
    let delete = Txn::new().when([ours]).and_then([TxnOp::delete(key, None)]);
    let cleaned = client
        .txn(delete)
        .await
        .with_context(|| format!("delete {key}"))?;
    if !cleaned.succeeded() {
        println!("   left {key} in place: someone else wrote it after revision {written_at}");
    }
    Ok(())
}

/// The demo's last line: what is left under `<name>/`, read back rather than assumed (a contender may
/// have joined since the demo checked).
pub async fn say_what_is_left(
    client: &mut Client,
    name: &str,
    leases: &[i64],
    exit: &mut ExitBudget,
) -> Result<()> {
    let prefix = format!("{name}/");
    let count_only = GetOptions::new().with_prefix().with_count_only();
    let left = exit
        .call(
            format!("count the keys under {prefix}"),
            client.get(prefix.as_str(), Some(count_only)),
        )
        .await?;
    let shown: Vec<String> = leases.iter().map(|id| format!("{id:016x}")).collect();
    let shown = shown.join(" and ");
    match left.count() {
        0 => println!("done: leases {shown} revoked, nothing is left under {prefix}"),
        n => println!(
            "done: leases {shown} revoked; {n} key(s) that are not the demo's are under {prefix}"
        ),
    }
    Ok(())
}

/// The keys under a prefix in the order of the lock's queue: by create revision, the holder first.
fn queue_order() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
}

fn lock_key(kv: &etcd_client::KeyValue) -> LockKey {
    LockKey {
        key: text(kv.key()),
        create_revision: kv.create_revision(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
