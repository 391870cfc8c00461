//! The reusable part of the `lock` topic: a lock session, a lock attempt that does not wait, and a write
//! that only the current holder of a lock can make.
//!
//! Every other call of the topic (`lease_grant`, `lock`, `unlock`, `lease_revoke`) is one `etcd-client` call,
//! and `src/main.rs` makes it at the step that explains it. This file depends only on `etcd-client`, `tokio`,
//! `anyhow` and `log`, so it can be copied into a service as is (see the topic README, "Use it in your
//! project").
//!
//! How etcd's lock works, in three sentences. Every contender writes a key `<name>/<its lease id in hex>`
//! attached to its lease; the key with the lowest create revision holds the lock, the others wait for the
//! keys created before theirs to be deleted. Unlocking deletes the key; so does the lease expiring or being
//! revoked, which is how a crashed holder's lock comes free. The holder's create revision only ever grows
//! from one holder to the next, so it doubles as a *fencing token* (see [`put_if_holder`]).

use std::time::Duration;

use anyhow::{Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse,
};

/// First pause before re-trying a call that failed because etcd could not be reached; it doubles after
/// each failure up to [`MAX_PAUSE`], so a process waiting out an etcd restart does not spin.
pub const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Longest pause between two attempts to reach etcd again.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// One contender's key in a lock's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockKey {
    /// `<name>/<lease id in hex>`, as etcd's lock service writes it.
    pub key: String,
    /// The key's create revision: the queue is ordered by it, and for the holder it is the fencing token,
    /// higher than every earlier holder's.
    pub create_revision: i64,
}

/// What a [`try_acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryOutcome {
    /// The lock was free: we hold it now.
    Acquired(LockKey),
    /// Someone else holds it; we left no key behind.
    Taken { holder: LockKey },
}

/// Acquire the lock `name` for lease `lease_id` only if nobody holds it, without waiting (Go's
/// `Mutex.TryLock`).
///
/// Use it when waiting is the wrong answer: a cron job that should skip its run while another instance is
/// still busy, a command that should say "busy" rather than hang. To wait, use `client.lock(..)`.
///
/// The lock RPC always waits, so this does by hand what it does on the server, with the same keys (Go and
/// Rust contenders and the lock RPC share one queue): in one transaction, put our key (only if it does not
/// exist yet) and read the oldest key of the queue. If the oldest is ours, we hold the lock; if not, we
/// delete our key again, so that we do not stay queued behind the holder.
pub async fn try_acquire(client: &mut Client, name: &str, lease_id: i64) -> Result<TryOutcome> {
    // The lock service's key scheme: the lease ID in hex, without leading zeros (Go's `%x`).
    let mine = format!("{name}/{lease_id:x}");
    let oldest = || {
        let first_created = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        TxnOp::get(format!("{name}/"), Some(first_created))
    };
    let put_mine = TxnOp::put(
        mine.as_str(),
        "",
        Some(PutOptions::new().with_lease(lease_id)),
    );
    let txn = Txn::new()
        .when([Compare::create_revision(mine.as_str(), CompareOp::Equal, 0)])
        .and_then([put_mine, oldest()])
        // Our key already exists (this session queued earlier): reuse it, as Go does.
        .or_else([TxnOp::get(mine.as_str(), None), oldest()]);
    let resp = client
        .txn(txn)
        .await
        .with_context(|| format!("try to lock {name}"))?;

    let replies = resp.op_responses();
    let my_revision = if resp.succeeded() {
        // The put was the transaction's only write, so it created our key at the new store revision.
        resp.header().map_or(0, |h| h.revision())
    } else {
        first_key(replies.first())
            .with_context(|| format!("{mine} vanished during the transaction"))?
            .create_revision
    };
    let holder = first_key(replies.get(1))
        .with_context(|| format!("the queue under {name}/ is empty right after we joined it"))?;
    if holder.create_revision == my_revision {
        return Ok(TryOutcome::Acquired(LockKey {
            key: mine,
            create_revision: my_revision,
        }));
    }
    client
        .delete(mine.as_str(), None)
        .await
        .with_context(|| format!("withdraw {mine} from the queue"))?;
    Ok(TryOutcome::Taken { holder })
}

/// The first key of a GET inside a transaction.
fn first_key(reply: Option<&TxnOpResponse>) -> Option<LockKey> {
    let Some(TxnOpResponse::Get(get)) = reply else {
        return None;
    };
    get.kvs().first().map(|kv| LockKey {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        create_revision: kv.create_revision(),
    })
}

/// A write protected by the lock: `key = value` happens only if `held` is *still* the holder, checked by
/// etcd in the same transaction as the write. Returns the revision of the write (its `mod_revision`, which
/// lets you later recognise, or delete, exactly the value you wrote), or `None` if etcd refused it.
///
/// Use it for every write the lock protects, instead of a plain `put`. The lock alone is not enough: a
/// holder can stall longer than its TTL (a GC pause, a frozen VM, a cut network). Its lease expires, etcd
/// deletes its key, the next contender gets the lock, and then the stalled one wakes up still believing it
/// holds the lock. Its write must be refused, and only the storage can refuse it, at the moment of the
/// write.
///
/// For data in etcd, the check is "my lock key still exists with the create revision I got": an expired
/// or released lock key is gone (create revision 0), and a new key never gets an old revision back.
/// For data elsewhere (a database, a file store), send the create revision as a fencing token with each
/// write; the storage remembers the highest token it has accepted and refuses any lower one. Both work
/// because each new holder's create revision is higher than every earlier holder's.
pub async fn put_if_holder(
    client: &mut Client,
    held: &LockKey,
    key: &str,
    value: &str,
) -> Result<Option<i64>> {
    let txn = Txn::new()
        .when([Compare::create_revision(
            held.key.as_str(),
            CompareOp::Equal,
            held.create_revision,
        )])
        .and_then([TxnOp::put(key, value, None)]);
    let resp = client
        .txn(txn)
        .await
        .with_context(|| format!("write {key} guarded by {}", held.key))?;
    // The put was the transaction's only write, so it happened at the store revision the reply reports.
    Ok(resp
        .succeeded()
        .then(|| resp.header().map_or(0, |h| h.revision())))
}
