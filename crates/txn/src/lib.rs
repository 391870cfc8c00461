//! The reusable part of the `txn` topic: put-if-absent, compare-and-swap with retries, and a transfer
//! between two balances that never loses or creates money.
//!
//! `src/main.rs` builds the same transactions inline, at the steps that explain them; this file holds
//! them ready to copy. It depends on `etcd-client`, `tokio`, `anyhow` and `log`, and on the `Backoff` of
//! `recipes::errors` for the pauses between retries: copy that recipe with it (see the topic README, "Use
//! it in your project").
//!
//! An etcd transaction, in three sentences. `Txn::new().when(compares).and_then(ops).or_else(ops)` is
//! sent as one request, and etcd evaluates every compare and runs one of the two lists of operations
//! atomically, at one revision: no other write can come in between. A compare looks at a key's
//! `create_revision`, `mod_revision`, `version`, `value` or `lease`; for a key that does not exist, the
//! first three are 0. The `or_else` branch can read the keys that made the compare fail, so the caller
//! learns *why* in the same round trip, with nothing to race against.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use log::debug;
use recipes::errors::Backoff;
use tokio::time::Instant;

/// The pause after the first lost race is up to this long; each further lost race doubles the limit,
/// up to [`MAX_PAUSE`]. The pause itself is a random time from 0 to the limit ("full jitter"), so that
/// writers that collided spread out instead of colliding again at once.
pub const FIRST_PAUSE: Duration = Duration::from_millis(2);

/// The longest pause between two attempts of a compare-and-swap.
pub const MAX_PAUSE: Duration = Duration::from_millis(500);

/// How long [`compare_and_swap`] and [`transfer`] keep retrying before giving up. A key that changes
/// under every attempt for this long is too hot for optimistic writes: serialize its writers with a lock.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

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
/// another client wrote in between, nothing is written: it pauses (a random time whose limit doubles
/// with each lost race), then reads the key again and tries again from there, calling `f` again. The
/// read comes *after* the pause, so that the write follows it at once: a value read before a pause is
/// likely stale by the time the pause ends, and the write would lose again. The key's lease, if it has
/// one, is kept. After [`GIVE_UP_AFTER`] of lost races it gives up with an error.
///
/// A failed call (etcd unreachable, the connection lost mid-request) is returned, not retried: the write
/// may have happened anyway, and trying again would apply `f` twice.
pub async fn compare_and_swap<F, V>(client: &mut Client, key: &str, mut f: F) -> Result<Swapped>
where
    F: FnMut(Option<&[u8]>) -> Result<V>,
    V: Into<Vec<u8>>,
{
    let mut backoff = Retries::new();
    loop {
        let got = client
            .get(key, None)
            .await
            .with_context(|| format!("read {key}"))?;
        let current = got.kvs().first().cloned();
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
            )]);
        let resp = client
            .txn(txn)
            .await
            .with_context(|| format!("write {key} if unchanged since revision {seen}"))?;
        if resp.succeeded() {
            return Ok(Swapped {
                attempts: backoff.attempts(),
                previous: current.map(|kv| kv.value().to_vec()),
                value,
                revision: revision_of(&resp),
            });
        }
        // Lost the race: another client wrote the key since our read.
        backoff
            .pause(key, &format!("changed since revision {seen}"))
            .await?;
    }
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
/// It reads both balances at one revision (two GETs, the second at the first one's revision), then writes
/// both new balances in one transaction guarded by *both* keys' mod revisions. If either changed, it
/// pauses like [`compare_and_swap`], reads both again and decides again whether the source has enough.
/// Like [`compare_and_swap`], a failed call is returned, not retried.
pub async fn transfer(client: &mut Client, from: &str, to: &str, amount: u64) -> Result<Transfer> {
    if from == to {
        bail!("a transfer needs two different accounts, got {from} twice");
    }
    let mut backoff = Retries::new();
    loop {
        // Both balances from one moment: read `from`, then `to` at the revision the first read saw.
        // (A read-only transaction of two GETs would do it in one round trip, but etcd 3.5.0 to 3.5.4
        // crash when a client cancels a read-only transaction, as Ctrl-C does to a worker's call in
        // flight: etcd issue #14110, "panic: unexpected error during txn". Plain GETs are safe.)
        let first = client
            .get(from, None)
            .await
            .with_context(|| format!("read {from}"))?;
        let at = first.header().map_or(0, |h| h.revision());
        let second = client
            .get(to, Some(GetOptions::new().with_revision(at)))
            .await
            .with_context(|| format!("read {to} at revision {at}"))?;
        let (source, target) = (balance(first.kvs(), from)?, balance(second.kvs(), to)?);
        if source.amount < amount {
            return Ok(Transfer::Insufficient {
                attempts: backoff.attempts(),
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
            ]);
        let resp = client
            .txn(txn)
            .await
            .with_context(|| format!("move {amount} from {from} to {to}"))?;
        if resp.succeeded() {
            return Ok(Transfer::Moved {
                attempts: backoff.attempts(),
                revision: revision_of(&resp),
            });
        }
        // Lost the race: someone wrote one of the two since our read.
        backoff
            .pause(&format!("{from} or {to}"), "changed since our read")
            .await?;
    }
}

/// A balance as read, with the mod revision a write must find unchanged.
struct Balance {
    amount: u64,
    mod_revision: i64,
}

/// The balance in the key-values a GET of `key` returned.
fn balance(kvs: &[KeyValue], key: &str) -> Result<Balance> {
    let kv = kvs
        .first()
        .with_context(|| format!("account {key} does not exist"))?;
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
pub fn kv_of(resp: &TxnResponse, index: usize) -> Option<KeyValue> {
    match resp.op_responses().get(index) {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().cloned(),
        _ => None,
    }
}

/// The store revision a reply reports: after a transaction that wrote, the revision of its writes.
pub fn revision_of(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

/// The pauses between the attempts of one [`compare_and_swap`] or [`transfer`]: use it for a
/// compare-and-swap loop of your own.
///
/// After the n-th lost race it waits a random time from 0 to `FIRST_PAUSE * 2^n` (at most
/// [`MAX_PAUSE`]): "exponential backoff with full jitter". The limit grows with the conflicts this call
/// has seen, so the more writers collide, the further apart their retries spread; and the randomness
/// keeps writers that collided from retrying at the same moment. There is no fixed number of attempts:
/// with many writers on one key, each attempt has a small chance, and a few hundred lost races are
/// normal. Only a deadline, [`GIVE_UP_AFTER`] from the first attempt, ends the retries.
#[derive(Debug, Clone)]
pub struct Retries {
    pauses: Backoff,
    give_up_at: Instant,
}

impl Default for Retries {
    fn default() -> Retries {
        Retries::new()
    }
}

impl Retries {
    /// The schedule, starting now: the deadline is [`GIVE_UP_AFTER`] from this call.
    pub fn new() -> Retries {
        Retries {
            pauses: Backoff::new(FIRST_PAUSE, MAX_PAUSE).full_jitter(),
            give_up_at: Instant::now() + GIVE_UP_AFTER,
        }
    }

    /// The same schedule without the randomness: each pause is the limit itself (2 ms, 4 ms, 8 ms...). For
    /// one writer whose pauses are shown or tested, as step 2 of `cargo run -p txn` does; writers that
    /// race each other need the jitter of [`Retries::new`].
    pub fn without_jitter(self) -> Retries {
        Retries {
            pauses: Backoff::new(FIRST_PAUSE, MAX_PAUSE),
            ..self
        }
    }

    /// The attempts made so far, counting the one in progress.
    pub fn attempts(&self) -> u32 {
        self.pauses.failures() + 1
    }

    /// Waits after a lost race on `what` (`why` says what changed, for the debug log) and returns the
    /// pause it took, or fails once the deadline has passed.
    pub async fn pause(&mut self, what: &str, why: &str) -> Result<Duration> {
        let left = self.give_up_at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "{what} changed under each of {} attempts in {GIVE_UP_AFTER:?}: too many writers for \
                 optimistic compare-and-swap; serialize them with a lock",
                self.attempts()
            );
        }
        let wait = self.pauses.next_pause().min(left);
        debug!("{what} {why}; attempt {} in {wait:?}", self.attempts());
        tokio::time::sleep(wait).await;
        Ok(wait)
    }
}
