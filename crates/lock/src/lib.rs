//! The client calls behind `cargo run -p lock`, one small function per step, so each can be copied into a
//! service on its own. `main.rs` calls them in order and prints what they return.
//!
//! How etcd's lock works, in three sentences. Every contender writes a key `<name>/<its lease id in hex>`
//! attached to its lease; the key with the lowest create revision holds the lock, the others wait for the
//! keys created before theirs to be deleted. Unlocking deletes the key; so does the lease expiring or being
//! revoked, which is how a crashed holder's lock comes free. The holder's create revision only ever grows
//! from one holder to the next, so it doubles as a *fencing token* (see [`put_if_holder`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LeaseKeepAliveStream, LeaseKeeper, LockOptions,
    PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use etcd_connect::show_bytes;
use log::{debug, warn};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The TTL etcd's lock service gives a lock taken *without* a lease. The server then makes a lease of its
/// own (as Go's `concurrency.NewSession` does by default) and never renews it: about 60 s later the lock is
/// gone, whether or not its holder has finished. Always lock with your own kept-alive [`Session`].
pub const SERVER_SESSION_TTL: i64 = 60;

/// A session is a lease that stays alive while this process does, like Go's `concurrency.Session`.
///
/// The Rust client does not renew leases by itself: without the background task started here, the lease,
/// and with it the lock, would expire after `ttl` seconds even though the holder is still working.
pub struct Session {
    client: Client,
    lease_id: i64,
    ttl: i64,
    renewer: JoinHandle<String>,
}

impl Session {
    /// Grants a lease of `ttl` seconds and starts renewing it every third of its TTL, so that one late or
    /// lost renewal does not let it expire.
    pub async fn start(client: &Client, ttl: i64) -> Result<Session> {
        let mut client = client.clone();
        let grant = client
            .lease_grant(ttl, None)
            .await
            .with_context(|| format!("grant a {ttl}s lease"))?;
        // etcd may raise a very short TTL to its minimum; plan renewals on what it actually granted.
        let (lease_id, ttl) = (grant.id(), grant.ttl());
        let (keeper, replies) = client
            .lease_keep_alive(lease_id)
            .await
            .with_context(|| format!("start renewing lease {lease_id:x}"))?;
        let every = Duration::from_secs_f64(ttl as f64 / 3.0);
        let renewer = tokio::spawn(keep_renewing(keeper, replies, every));
        debug!("session lease {lease_id:x} granted for {ttl}s, renewed every {every:?}");
        Ok(Session {
            client,
            lease_id,
            ttl,
            renewer,
        })
    }

    /// The lease ID: it names this session's lock keys and is what etcd deletes them with.
    pub fn lease_id(&self) -> i64 {
        self.lease_id
    }

    /// The TTL etcd granted, in seconds.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Resolves only if the renewals stop (etcd unreachable for too long, or the lease expired): from then
    /// on this session may have lost its lock to someone else. Go's `session.Done()`.
    pub async fn lost(&mut self) -> String {
        match (&mut self.renewer).await {
            Ok(why) => why,
            Err(e) => format!("the renewal task stopped: {e}"),
        }
    }

    /// Ends the session: stop renewing, then revoke the lease. Revoking deletes every key attached to it,
    /// so a lock still held, or a place still queued, is given up at once instead of after the TTL.
    pub async fn close(mut self) -> Result<()> {
        self.renewer.abort();
        self.client
            .lease_revoke(self.lease_id)
            .await
            .with_context(|| format!("revoke lease {:x}", self.lease_id))?;
        Ok(())
    }
}

/// Renews the lease every `every` until something goes wrong, and returns what went wrong.
async fn keep_renewing(
    mut keeper: LeaseKeeper,
    mut replies: LeaseKeepAliveStream,
    every: Duration,
) -> String {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = keeper.keep_alive().await {
            return format!("cannot send a lease renewal: {e}");
        }
        let why = match replies.message().await {
            // etcd answers a renewal with the fresh TTL; 0 means the lease was already gone.
            Ok(Some(reply)) if reply.ttl() > 0 => {
                debug!("lease {:x} renewed for {}s", reply.id(), reply.ttl());
                continue;
            }
            Ok(Some(reply)) => format!("lease {:x} expired on the server", reply.id()),
            Ok(None) => "etcd closed the lease renewal stream".to_string(),
            Err(e) => format!("lease renewal failed: {e}"),
        };
        warn!("{why}");
        return why;
    }
}

/// One contender's key in a lock's queue. For the holder, `revision` is its fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockKey {
    /// `<name>/<lease id in hex>`.
    pub key: String,
    /// The key's create revision: the queue is ordered by it, and it grows from one holder to the next.
    pub revision: i64,
}

/// The key etcd's lock service writes for a session: `<name>/<lease id in hex>`, the same scheme as Go's
/// `concurrency.Mutex`, so Go and Rust processes can share a lock.
pub fn lock_key(name: &str, lease_id: i64) -> String {
    format!("{name}/{lease_id:x}")
}

/// All contenders' keys live under `<name>/`.
fn queue_prefix(name: &str) -> String {
    format!("{name}/")
}

/// Step 1: acquire the lock `name` for the session with lease `lease_id`, waiting as long as it takes.
///
/// The lock RPC blocks on the server until every key queued before ours is deleted. Dropping this future
/// (Ctrl-C) cancels the RPC and the server removes our queued key.
pub async fn acquire(client: &mut Client, name: &str, lease_id: i64) -> Result<LockKey> {
    let resp = client
        .lock(name, Some(LockOptions::new().with_lease(lease_id)))
        .await
        .with_context(|| format!("lock {name}"))?;
    let key = show_bytes(resp.key());
    // The reply's header revision is when we were woken up, not when we queued; the fencing token must be
    // the key's own create revision, so read it back.
    let revision = create_revision(client, &key).await?.with_context(|| {
        format!("{key} vanished right after it was granted: did lease {lease_id:x} expire?")
    })?;
    Ok(LockKey { key, revision })
}

/// The create revision of `key`, or `None` if it does not exist.
async fn create_revision(client: &mut Client, key: &str) -> Result<Option<i64>> {
    let resp = client
        .get(key, None)
        .await
        .with_context(|| format!("get {key}"))?;
    Ok(resp.kvs().first().map(|kv| kv.create_revision()))
}

/// Step 2: the lock's queue, holder first: every key under `<name>/`, oldest create revision first.
pub async fn queue(client: &mut Client, name: &str) -> Result<Vec<LockKey>> {
    let prefix = queue_prefix(name);
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    let resp = client
        .get(prefix.as_str(), Some(options))
        .await
        .with_context(|| format!("list the queue under {prefix}"))?;
    Ok(resp
        .kvs()
        .iter()
        .map(|kv| LockKey {
            key: show_bytes(kv.key()),
            revision: kv.create_revision(),
        })
        .collect())
}

/// Waits until `key` is in the queue of `name`, polling for at most `limit`, and returns the queue.
///
/// A lock call in flight gives no sign that it has reached the server; its key appearing does.
pub async fn wait_until_queued(
    client: &mut Client,
    name: &str,
    key: &str,
    limit: Duration,
) -> Result<Vec<LockKey>> {
    let deadline = Instant::now() + limit;
    loop {
        let queue = queue(client, name).await?;
        if queue.iter().any(|k| k.key == key) {
            return Ok(queue);
        }
        if Instant::now() >= deadline {
            bail!("{key} did not appear under {name}/ within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Step 3: release a lock. Deleting the key wakes the next contender in the queue.
pub async fn release(client: &mut Client, held: &LockKey) -> Result<()> {
    client
        .unlock(held.key.as_str())
        .await
        .with_context(|| format!("unlock {}", held.key))?;
    Ok(())
}

/// What a [`try_acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryOutcome {
    /// The lock was free: we hold it now.
    Acquired(LockKey),
    /// Someone else holds it; we left no key behind.
    Taken { holder: LockKey },
}

/// Acquire `name` only if nobody holds it, without waiting (Go's `Mutex.TryLock`).
///
/// The lock RPC always waits, so this does by hand what it does on the server, with the same keys: in one
/// transaction, put our key (only if it does not exist yet) and read the oldest key of the queue. If the
/// oldest is ours, we hold the lock; if not, we delete our key again, so we do not queue behind the holder.
pub async fn try_acquire(client: &mut Client, name: &str, lease_id: i64) -> Result<TryOutcome> {
    let mine = lock_key(name, lease_id);
    let oldest = || {
        let first_created = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        TxnOp::get(queue_prefix(name), Some(first_created))
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
        first_entry(replies.first())
            .with_context(|| format!("{mine} vanished during the transaction"))?
            .revision
    };
    let holder = first_entry(replies.get(1))
        .with_context(|| format!("the queue under {name}/ is empty right after we joined it"))?;
    if holder.revision == my_revision {
        return Ok(TryOutcome::Acquired(LockKey {
            key: mine,
            revision: my_revision,
        }));
    }
    client
        .delete(mine.as_str(), None)
        .await
        .with_context(|| format!("withdraw {mine} from the queue"))?;
    Ok(TryOutcome::Taken { holder })
}

/// The first key of a GET inside a transaction.
fn first_entry(reply: Option<&TxnOpResponse>) -> Option<LockKey> {
    let Some(TxnOpResponse::Get(get)) = reply else {
        return None;
    };
    get.kvs().first().map(|kv| LockKey {
        key: show_bytes(kv.key()),
        revision: kv.create_revision(),
    })
}

/// A write protected by the lock: it happens only if `held` is *still* the holder, checked by etcd in the
/// same transaction as the write. Returns whether the write happened.
///
/// Why the lock alone is not enough: a holder can stall longer than its TTL (a GC pause, a frozen VM, a
/// cut network). Its lease expires, etcd deletes its key, the next contender gets the lock, and then the
/// stalled one wakes up still believing it holds the lock. Its write must be refused, and only the storage
/// can refuse it, at the moment of the write.
///
/// For data in etcd, the check is "my lock key still exists with the create revision I got": an expired
/// or released lock key is gone (create revision 0), and a new key never gets an old revision back.
/// For data elsewhere (a database, a file store), send the revision as a fencing token with each write;
/// the storage remembers the highest token it has accepted and refuses any lower one. Both work because
/// each new holder's revision is higher than every earlier holder's.
pub async fn put_if_holder(
    client: &mut Client,
    held: &LockKey,
    key: &str,
    value: &str,
) -> Result<bool> {
    let txn = Txn::new()
        .when([Compare::create_revision(
            held.key.as_str(),
            CompareOp::Equal,
            held.revision,
        )])
        .and_then([TxnOp::put(key, value, None)]);
    let resp = client
        .txn(txn)
        .await
        .with_context(|| format!("write {key} guarded by {}", held.key))?;
    Ok(resp.succeeded())
}

/// The pitfall: lock without a lease. It works, which is the trap: see [`SERVER_SESSION_TTL`].
pub async fn lock_without_lease(client: &mut Client, name: &str) -> Result<LockKey> {
    let resp = client
        .lock(name, None)
        .await
        .with_context(|| format!("lock {name} without a lease"))?;
    let key = show_bytes(resp.key());
    let revision = create_revision(client, &key)
        .await?
        .with_context(|| format!("{key} vanished right after it was granted"))?;
    Ok(LockKey { key, revision })
}

/// The lease a key is attached to, as etcd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    /// The TTL the lease was granted with, in seconds.
    pub granted_ttl: i64,
    /// Seconds left before it expires, unless renewed.
    pub remaining_ttl: i64,
}

/// Which lease keeps `key` alive, and for how long.
pub async fn lease_behind(client: &mut Client, key: &str) -> Result<LeaseInfo> {
    let resp = client
        .get(key, None)
        .await
        .with_context(|| format!("get {key}"))?;
    let Some(kv) = resp.kvs().first() else {
        bail!("{key} does not exist");
    };
    if kv.lease() == 0 {
        bail!("{key} has no lease");
    }
    let ttl = client
        .lease_time_to_live(kv.lease(), None)
        .await
        .with_context(|| format!("ask etcd about lease {:x}", kv.lease()))?;
    Ok(LeaseInfo {
        id: kv.lease(),
        granted_ttl: ttl.granted_ttl(),
        remaining_ttl: ttl.ttl(),
    })
}

/// Milliseconds since the Unix epoch, to compare the printed times of processes on one machine.
pub fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970")
        .as_millis()
}
