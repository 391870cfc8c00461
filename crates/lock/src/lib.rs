//! The reusable part of the `lock` topic: acquiring a lock *with its fencing token*, a lock attempt that
//! does not wait, and a write that only the current holder of a lock can make.
//!
//! `src/main.rs` makes the topic's etcd-client calls (`lease_grant`, `lock`, `unlock`, `lease_revoke`) at
//! the steps that explain them; this file holds what a service needs around them. It depends on
//! `etcd-client`, `tokio`, `anyhow` and `log`, and on the recipe `recipes::errors` (for [`Backoff`] and
//! [`is_transient`]); the session that keeps a lock's lease alive is `recipes::kept_lease::Session`. See
//! the topic README, "Use it in your project".
//!
//! How etcd's lock works, in three sentences. Every contender writes a key `<name>/<its lease id in hex>`
//! attached to its lease; the key with the lowest create revision holds the lock, the others wait for the
//! keys created before theirs to be deleted. Unlocking deletes the key; so does the lease expiring or being
//! revoked, which is how a crashed holder's lock comes free. The holder's create revision only ever grows
//! from one holder to the next, so it doubles as a *fencing token* (see [`put_if_holder`]).

use anyhow::{bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LockOptions, LockResponse, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse,
};
use log::debug;
use recipes::errors::{is_transient, Backoff};

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

/// The key a granted lock call holds, read back for its fencing token: pass it the answer of
/// `client.lock(name, Some(LockOptions::new().with_lease(lease_id)))`.
///
/// The lock reply names the key but not its create revision, the token (its header revision is when the
/// lock was granted, which can be later), so this reads the key back. That also checks that the key still
/// exists: etcd answers once the keys queued before ours are gone, without checking that ours is still
/// there. It may not be: when a lock call is cancelled (a broken connection), etcd deletes its key once it
/// notices, maybe after the call made again found that same key `<name>/<lease>` and queued with it.
/// etcd 3.5 reads the key back itself and then answers Go's `ErrSessionExpired`, "mutex: session is
/// expired": the same case.
///
/// `Ok(None)`: our key is gone although etcd says our lease lives; lock again (at the back of the queue).
/// An error if the lock call failed (with the etcd-client error inside, for [`is_transient`]), or if the
/// lease is gone, since the key went with it.
pub async fn fencing_token(
    client: &mut Client,
    name: &str,
    lease_id: i64,
    locked: Result<LockResponse, etcd_client::Error>,
) -> Result<Option<LockKey>> {
    let key = match locked {
        Ok(locked) => String::from_utf8_lossy(locked.key()).into_owned(),
        Err(e) if session_expired(&e) => {
            debug!("lock {name}: {e:?}");
            lease_lives_on(client, &format!("{name}/{lease_id:x}"), lease_id).await?;
            return Ok(None);
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("lock {name}"))),
    };
    let got = client
        .get(key.as_str(), None)
        .await
        .with_context(|| format!("get {key}"))?;
    if let Some(kv) = got.kvs().first() {
        return Ok(Some(LockKey {
            create_revision: kv.create_revision(),
            key,
        }));
    }
    lease_lives_on(client, &key, lease_id).await?;
    Ok(None)
}

/// etcd 3.5's answer when our key is gone by the time the lock is granted (Go's `ErrSessionExpired`).
/// gRPC gives it the code UNKNOWN, which [`is_transient`] counts as transient: check this first.
fn session_expired(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("session is expired"))
}

/// Our lock `key` is gone: asks etcd whether `lease` is too, rather than guess, and fails if it is.
async fn lease_lives_on(client: &mut Client, key: &str, lease: i64) -> Result<()> {
    let left = client
        .lease_time_to_live(lease, None)
        .await
        .with_context(|| {
            format!("{key} is gone from the queue; ask etcd about lease {lease:016x}")
        })?
        .ttl();
    if left <= 0 {
        bail!(
            "{key} is gone from the queue: etcd says lease {lease:016x} no longer exists \
             (it expired or was revoked), and its keys went with it"
        );
    }
    debug!("{key} is gone, but lease {lease:016x} lives for {left}s more");
    Ok(())
}

/// Why [`acquire`] asks etcd again.
#[derive(Debug)]
pub enum Retry<'a> {
    /// A call failed in a way that may pass (the connection broke, etcd restarts): it asks again with
    /// the same lease after a pause ([`Backoff::default`]). After an etcd restart the lock service finds
    /// our key `<name>/<lease>` still there and keeps its create revision: we keep our place.
    Transient(&'a etcd_client::Error),
    /// Our key `key` was deleted while our lease lives (see [`fencing_token`]): it asks again at once,
    /// at the back of the queue.
    Requeued { key: &'a str },
}

/// Waits for the lock `name` on lease `lease_id` (a [`Session`](recipes::kept_lease::Session)'s) and
/// returns the key it holds with its fencing token: Go's `Mutex.Lock`, then `Mutex.Key` and the key's
/// create revision. Asks again, telling `on_retry` why, when a call fails transiently or when etcd
/// deleted our queued key while our lease lives; any other error ends it.
///
/// It waits as long as it takes: bound it by the session (`session.lost()`) and a signal in
/// `tokio::select!`. Dropping it cancels the lock call, and etcd then removes our queued key.
pub async fn acquire(
    client: &mut Client,
    name: &str,
    lease_id: i64,
    mut on_retry: impl FnMut(Retry<'_>),
) -> Result<LockKey> {
    let mut backoff = Backoff::default();
    loop {
        let options = LockOptions::new().with_lease(lease_id);
        let locked = client.lock(name, Some(options)).await;
        match fencing_token(client, name, lease_id, locked).await {
            Ok(Some(held)) => return Ok(held),
            Ok(None) => on_retry(Retry::Requeued {
                key: &format!("{name}/{lease_id:x}"),
            }),
            Err(e) => match e.downcast_ref::<etcd_client::Error>() {
                Some(cause) if is_transient(cause) => {
                    debug!("{e:#}; asking again");
                    on_retry(Retry::Transient(cause));
                    backoff.wait().await;
                }
                _ => return Err(e),
            },
        }
    }
}
