//! The reusable part of the `txn` topic: put-if-absent, compare-and-swap with retries, and a transfer
//! between two balances that never loses or creates money.
//!
//! `src/main.rs` builds the same transactions inline, at the steps that explain them; this file holds
//! them ready to copy. It depends only on `etcd-client`, `tokio`, `anyhow` and `log`, so it can be copied
//! into a service as is (see the topic README, "Use it in your project").
//!
//! An etcd transaction, in three sentences. `Txn::new().when(compares).and_then(ops).or_else(ops)` is
//! sent as one request, and etcd evaluates every compare and runs one of the two lists of operations
//! atomically, at one revision: no other write can come in between. A compare looks at a key's
//! `create_revision`, `mod_revision`, `version`, `value` or `lease`; for a key that does not exist, the
//! first three are 0. The `or_else` branch can read the keys that made the compare fail, so the caller
//! learns *why* in the same round trip, with nothing to race against.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use log::debug;

/// First pause before retrying a compare-and-swap that lost a race; it doubles after each lost race up
/// to [`MAX_PAUSE`], so writers that keep colliding spread out instead of colliding again at once.
pub const FIRST_PAUSE: Duration = Duration::from_millis(2);

/// Longest pause between two attempts of a compare-and-swap.
pub const MAX_PAUSE: Duration = Duration::from_millis(100);

/// How many times [`compare_and_swap`] and [`transfer`] try before giving up. A key that changes under
/// every one of this many attempts is too hot for optimistic writes: serialize its writers with a lock.
pub const MAX_ATTEMPTS: u32 = 100;

/// What [`put_if_absent`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutIfAbsent {
    /// The key did not exist: it holds our value now, written at this store revision (which is also its
    /// create revision).
    Created { revision: i64 },
    /// The key already existed, and was left as it was. Its current state, read in the same transaction
    /// that found it, so it is exactly what made the put lose.
    Exists {
        value: Vec<u8>,
        create_revision: i64,
        mod_revision: i64,
        /// How many times it was written since it was created (1: never overwritten).
        version: i64,
        /// The lease it is attached to, 0 for none.
        lease: i64,
    },
}

/// Writes `key = value` only if `key` does not exist: Redis `SETNX` (with a lease in `options`:
/// `SET key value NX EX ttl`).
///
/// Use it wherever "first writer wins": claiming a job, registering a unique name, creating a
/// configuration only once. A plain `get` then `put` is not enough: two clients can both see the key
/// absent and both write, and the second silently overwrites the first.
///
/// One transaction: *if* the key's create revision is 0 (it does not exist) *then* put *else* get. Among
/// any number of callers racing on one key, exactly one gets [`PutIfAbsent::Created`]; all others get
/// [`PutIfAbsent::Exists`] with the winner's value.
pub async fn put_if_absent(
    client: &mut Client,
    key: &str,
    value: impl Into<Vec<u8>>,
    options: Option<PutOptions>,
) -> Result<PutIfAbsent> {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, options)])
        .or_else([TxnOp::get(key, None)]);
    let resp = client
        .txn(txn)
        .await
        .with_context(|| format!("put {key} if absent"))?;
    if resp.succeeded() {
        // The put was the transaction's only write, so it happened at the revision the reply reports.
        return Ok(PutIfAbsent::Created {
            revision: revision_of(&resp),
        });
    }
    let kv = kv_of(&resp, 0)
        .with_context(|| format!("{key} exists, yet the transaction that found it read nothing"))?;
    Ok(PutIfAbsent::Exists {
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    })
}

/// What [`compare_and_swap`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swapped {
    /// How many transactions it took: 1 when nobody else wrote the key meanwhile.
    pub attempts: u32,
    /// The value it replaced (`None`: the key did not exist).
    pub previous: Option<Vec<u8>>,
    /// The value it wrote.
    pub value: Vec<u8>,
    /// The store revision of its write: the key's new mod revision.
    pub revision: i64,
}

/// Replaces the value of `key` with `f(current value)`, safely against other writers: optimistic
/// concurrency, a read-modify-write that loses no update. `f` gets `None` when the key does not exist;
/// an error from `f` stops without writing.
///
/// Use it for any read-modify-write of one key: a counter, a JSON document, a list of members. A plain
/// `get`, compute, `put` loses updates: two clients read the same value, and the later put erases the
/// earlier one's change.
///
/// It reads the value and its mod revision (the revision of the key's last write, 0 if absent), computes
/// the new value, then writes it in a transaction *only if* the mod revision is still the one read. If
/// another client wrote in between, the transaction's else branch returns the key as it is now, and it
/// tries again from there (calling `f` again) after a short pause that grows with each lost race. The
/// key's lease, if it has one, is kept.
///
/// A failed call (etcd unreachable, the connection lost mid-request) is returned, not retried: the write
/// may have happened anyway, and trying again would apply `f` twice.
pub async fn compare_and_swap<F, V>(client: &mut Client, key: &str, mut f: F) -> Result<Swapped>
where
    F: FnMut(Option<&[u8]>) -> Result<V>,
    V: Into<Vec<u8>>,
{
    let got = client
        .get(key, None)
        .await
        .with_context(|| format!("read {key}"))?;
    let mut current = got.kvs().first().cloned();
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=MAX_ATTEMPTS {
        let seen = current.as_ref().map_or(0, KeyValue::mod_revision);
        let value: Vec<u8> = f(current.as_ref().map(KeyValue::value))
            .with_context(|| format!("compute the new value of {key}"))?
            .into();
        let lease = current.as_ref().map_or(0, KeyValue::lease);
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, seen)])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = client
            .txn(txn)
            .await
            .with_context(|| format!("write {key} if unchanged since revision {seen}"))?;
        if resp.succeeded() {
            return Ok(Swapped {
                attempts: attempt,
                previous: current.map(|kv| kv.value().to_vec()),
                value,
                revision: revision_of(&resp),
            });
        }
        // Lost the race: the else branch read the key as it is now (`None` if it was deleted).
        current = kv_of(&resp, 0);
        let wait = jittered(pause);
        debug!(
            "{key} changed since revision {seen} (now {}); attempt {} in {wait:?}",
            current.as_ref().map_or(0, KeyValue::mod_revision),
            attempt + 1
        );
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
    Err(too_hot(key))
}

/// What [`transfer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// The amount moved, at this store revision, after `attempts` transactions.
    Moved { attempts: u32, revision: i64 },
    /// The source held less than the amount, so nothing moved. `balance` is what it held.
    Insufficient { attempts: u32, balance: u64 },
}

impl Transfer {
    /// How many transactions it took; each one after the first followed a lost race.
    pub fn attempts(&self) -> u32 {
        match *self {
            Transfer::Moved { attempts, .. } | Transfer::Insufficient { attempts, .. } => attempts,
        }
    }
}

/// Moves `amount` from the balance stored at `from` to the one at `to` (each a whole number in decimal
/// text), only if `from` holds at least `amount`: a compare-and-swap over two keys.
///
/// Use it as the pattern for any change that must touch several keys together: both writes happen, or
/// neither does, and neither is based on a value that changed meanwhile. Two separate CAS writes would
/// not do: between them, the money would be in both accounts, or in neither.
///
/// It reads both balances in one read-only transaction (so both are from the same revision), then writes
/// both new balances in one transaction guarded by *both* keys' mod revisions. If either changed, the
/// else branch reads both again and it retries, with growing pauses, deciding again whether the source
/// has enough. Like [`compare_and_swap`], a failed call is returned, not retried.
pub async fn transfer(client: &mut Client, from: &str, to: &str, amount: u64) -> Result<Transfer> {
    if from == to {
        bail!("a transfer needs two different accounts, got {from} twice");
    }
    let read_both = || [TxnOp::get(from, None), TxnOp::get(to, None)];
    // A transaction without compares always runs its `and_then` list: here, two reads at one revision.
    let resp = client
        .txn(Txn::new().and_then(read_both()))
        .await
        .with_context(|| format!("read {from} and {to}"))?;
    let (mut source, mut target) = (balance(&resp, 0, from)?, balance(&resp, 1, to)?);
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=MAX_ATTEMPTS {
        if source.amount < amount {
            return Ok(Transfer::Insufficient {
                attempts: attempt,
                balance: source.amount,
            });
        }
        let credited = target
            .amount
            .checked_add(amount)
            .with_context(|| format!("{to} would overflow: {} + {amount}", target.amount))?;
        let txn = Txn::new()
            .when([
                Compare::mod_revision(from, CompareOp::Equal, source.mod_revision),
                Compare::mod_revision(to, CompareOp::Equal, target.mod_revision),
            ])
            .and_then([
                TxnOp::put(from, (source.amount - amount).to_string(), None),
                TxnOp::put(to, credited.to_string(), None),
            ])
            .or_else(read_both());
        let resp = client
            .txn(txn)
            .await
            .with_context(|| format!("move {amount} from {from} to {to}"))?;
        if resp.succeeded() {
            return Ok(Transfer::Moved {
                attempts: attempt,
                revision: revision_of(&resp),
            });
        }
        // Lost the race: someone wrote one of the two since our read. Start again from what is there now.
        (source, target) = (balance(&resp, 0, from)?, balance(&resp, 1, to)?);
        let wait = jittered(pause);
        debug!(
            "{from} -> {to}: changed since our read; attempt {} in {wait:?}",
            attempt + 1
        );
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
    Err(too_hot(&format!("{from} or {to}")))
}

/// A balance as read, with the mod revision a write must find unchanged.
struct Balance {
    amount: u64,
    mod_revision: i64,
}

/// The balance read by the `index`-th operation of a transaction.
fn balance(resp: &TxnResponse, index: usize, key: &str) -> Result<Balance> {
    let kv = kv_of(resp, index).with_context(|| format!("account {key} does not exist"))?;
    let text = String::from_utf8_lossy(kv.value());
    let amount = text
        .parse()
        .map_err(|e| anyhow!("account {key} holds {text:?}, not a whole number ({e})"))?;
    Ok(Balance {
        amount,
        mod_revision: kv.mod_revision(),
    })
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

fn too_hot(what: &str) -> anyhow::Error {
    anyhow!(
        "{what} changed under each of {MAX_ATTEMPTS} attempts: too many writers for optimistic \
         compare-and-swap; serialize them with a lock"
    )
}

/// `pause` shortened by a random part of up to half, so that writers that collided do not all retry at
/// the same moment and collide again. The randomness is a xorshift generator seeded from the clock: enough
/// to spread retries, without a dependency on `rand`.
fn jittered(pause: Duration) -> Duration {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        x = nanos | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    let half = pause / 2;
    half + half.mul_f64((x % 1024) as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_pauses_stay_between_half_and_the_whole() {
        for _ in 0..1000 {
            let p = jittered(Duration::from_millis(100));
            assert!(
                p >= Duration::from_millis(50) && p <= Duration::from_millis(100),
                "{p:?}"
            );
        }
    }
}
