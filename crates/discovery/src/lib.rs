//! The reusable part of the `discovery` topic: a service instance's [`Registration`] (registered only if
//! its key is free, kept alive, deregistered at once on the way out) and an [`InstanceWatch`] that follows
//! the set of a service's instances without missing a change.
//!
//! How service discovery works on etcd, in three sentences. Each instance writes the key
//! `<prefix>/<service>/<id>`, its address as the value, attached to a lease it keeps alive: while it runs
//! the key stays, and when it dies the renewals stop and etcd deletes the key one TTL later. A client reads
//! every key under `<prefix>/<service>/` with one GET, which is a snapshot at one store revision, then
//! watches that prefix from the revision right after the read, so that no change between the two is lost.
//! Each change the watch reports updates the set; a watch broken by an etcd restart is opened again from
//! the revision after the last change applied.
//!
//! The `register` and `watch` subcommands (`src/register.rs`, `src/watcher.rs`) make each `etcd-client`
//! call of the topic themselves, where they explain it; this file packs the same for a service. It
//! depends only on `etcd-client`, `tokio`, `anyhow` and `log`, so it can be copied into a service as is
//! (see the topic README, "Use it in your project").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, GetResponse, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchResponse, WatchStream,
};
use log::debug;
use recipes::errors::{is_transient, Backoff};
use recipes::kept_lease::{KeptLease, Renewal};
use recipes::resuming_watch::MAX_RESPONSE;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------------------
// The lease keeper: `KeptLease`, a copy of the keepalive topic's (crates/keepalive/src/lib.rs), kept here
// so that this file can be copied alone. `tests/steps.rs` checks that the two copies stay the same, from
// this line to the end marker below.
// ---------------------------------------------------------------------------------------------------------

/// Who holds an instance's key, when [`register`] finds it taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub key: String,
    /// The address the other instance registered.
    pub addr: String,
    /// The lease its key is attached to; 0 for none (a key written by hand, which stays until deleted).
    pub lease: i64,
    pub create_revision: i64,
}

/// What [`register`] did.
pub enum Registered {
    /// The key was free: it is ours now, kept alive in the background.
    Now(Registration),
    /// Another instance holds the key: nothing was written, and the lease granted for us is revoked.
    Taken(Holder),
}

/// One instance of a service, registered in etcd for as long as this process runs.
///
/// Use it in every instance of a service that others must find: [`register`] it at start-up, once it is
/// ready to serve; select on [`lost`](Self::lost) next to your work (when it resolves, clients can no
/// longer find you, so register again or stop); [`deregister`](Self::deregister) on Ctrl-C or SIGTERM,
/// so clients stop calling you at once instead of for up to a TTL. If the process is killed, nothing
/// deregisters it, but nothing renews its lease either, and etcd deletes the key when the TTL runs out.
///
/// The lease is renewed every TTL/3 by a background task, with [`KeptLease`], which also rides out a short
/// etcd outage by re-opening its keep-alive stream for as long as the lease can still be alive: an etcd
/// restart, or a freeze of up to two thirds of the TTL less a second ([`KeptLease::renew_every`] says why
/// not a whole TTL). Dropping it stops the renewals without deleting the key, which then goes when the TTL
/// runs out.
pub struct Registration {
    key: String,
    addr: String,
    lease_id: i64,
    ttl: i64,
    create_revision: i64,
    renewer: JoinHandle<String>,
    lost: Option<String>,
}

/// Registers `addr` under `key` (by convention `<prefix>/<service>/<id>`) on a new lease of `ttl` seconds,
/// only if no other instance holds that key, and keeps the lease alive in the background.
///
/// The key is written in one transaction that compares its create revision with 0, the revision of a key
/// that does not exist: if another instance (or one killed less than a TTL ago) holds it, etcd writes
/// nothing, and the same transaction reads the holder, returned as [`Registered::Taken`]. A plain PUT would
/// silently take the key over, and the first instance's lease would then no longer cover it.
///
/// Its calls are not bounded in time: wrap it in `tokio::time::timeout` if etcd may not answer. A lease
/// granted by an attempt that is dropped halfway is not renewed, so it expires after `ttl` seconds.
pub async fn register(client: &Client, key: &str, addr: &str, ttl: i64) -> Result<Registered> {
    let mut client = client.clone();
    let grant = client
        .lease_grant(ttl, None)
        .await
        .with_context(|| format!("grant a lease of {ttl}s for {key}"))?;
    // etcd may grant a longer TTL than asked (it raises very short ones): renew by the one it granted.
    let (id, ttl) = (grant.id(), grant.ttl());

    let absent = Compare::create_revision(key, CompareOp::Equal, 0);
    let write = TxnOp::put(key, addr, Some(PutOptions::new().with_lease(id)));
    let read_holder = TxnOp::get(key, None);
    let txn = Txn::new()
        .when([absent])
        .and_then([write])
        .or_else([read_holder]);
    let reply = match client.txn(txn).await {
        Ok(reply) => reply,
        Err(e) => {
            revoke_quietly(&mut client, id).await;
            return Err(anyhow!(e).context(format!("register {key} if it is free")));
        }
    };
    if !reply.succeeded() {
        revoke_quietly(&mut client, id).await;
        let holder = reply.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(got) => got.kvs().first().map(|kv| Holder {
                key: key.to_string(),
                addr: String::from_utf8_lossy(kv.value()).into_owned(),
                lease: kv.lease(),
                create_revision: kv.create_revision(),
            }),
            _ => None,
        });
        // The compare and the read are one transaction, so the key the compare saw is the key read.
        let holder = holder.context("etcd said the key exists but returned no holder")?;
        return Ok(Registered::Taken(holder));
    }
    let create_revision = reply.header().map_or(0, |h| h.revision());

    // Opening the stream renews the lease once; from here on `KeptLease` does the timing.
    let (keeper, answers) = match client.lease_keep_alive(id).await {
        Ok(ends) => ends,
        Err(e) => {
            revoke_quietly(&mut client, id).await;
            return Err(anyhow!(e).context(format!("start renewing lease {id:016x}")));
        }
    };
    let lease = KeptLease::new(id, ttl, keeper, answers);
    debug!(
        "registered {key} = {addr} on lease {id:016x} (ttl {ttl}s), renewed every {:?}",
        lease.renew_every()
    );
    let renewer = tokio::spawn(keep_renewing(lease, client.clone()));
    Ok(Registered::Now(Registration {
        key: key.to_string(),
        addr: addr.to_string(),
        lease_id: id,
        ttl,
        create_revision,
        renewer,
        lost: None,
    }))
}

/// The background task of a [`Registration`]: renews until the lease is gone, re-opening the stream when
/// it breaks; returns why it stopped.
async fn keep_renewing(mut lease: KeptLease, mut client: Client) -> String {
    loop {
        match lease.renew_when_due().await {
            Ok(Renewal::Alive { ttl }) => debug!("lease {:016x} renewed for {ttl}s", lease.id),
            Ok(Renewal::Gone) => {
                return format!(
                    "lease {:016x} is gone, and the registration with it: {}",
                    lease.id,
                    lease.why_gone()
                )
            }
            Err(broken) => {
                debug!(
                    "keep-alive stream of lease {:016x} broke ({broken:#}); re-opening it",
                    lease.id
                );
                if let Err(why) = lease.reopen(&mut client).await {
                    return format!("{why:#}");
                }
            }
        }
    }
}

/// Revokes a lease nobody will use, after a failed registration. Not bounded by a timeout of its own: if
/// etcd does not answer, the caller's timeout ends it, and the lease expires by itself.
async fn revoke_quietly(client: &mut Client, id: i64) {
    if let Err(e) = client.lease_revoke(id).await {
        debug!("revoke lease {id:016x}: {e}");
    }
}

impl Registration {
    /// The key this instance is registered under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The address registered.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The lease the key is attached to.
    pub fn lease_id(&self) -> i64 {
        self.lease_id
    }

    /// The TTL etcd granted, in seconds: how long the key outlives this process if it is killed.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// The store revision at which the key was created: clients that saw an older key of the same name
    /// saw another registration.
    pub fn create_revision(&self) -> i64 {
        self.create_revision
    }

    /// Resolves only once the registration is lost: etcd says the lease is gone (it was revoked, or it
    /// expired while this process could not reach etcd for a whole TTL). etcd has then deleted the key,
    /// and clients no longer find this instance. A short outage that the renewals ride out does not
    /// resolve it. Use it in `tokio::select!` next to the work.
    pub async fn lost(&mut self) -> String {
        if let Some(why) = &self.lost {
            return why.clone();
        }
        let why = match (&mut self.renewer).await {
            Ok(why) => why,
            Err(e) => format!("the renewal task stopped: {e}"),
        };
        self.lost = Some(why.clone());
        why
    }

    /// Deregisters at once: stops the renewals and revokes the lease (through `client`), which deletes
    /// the key, within `timeout`. If etcd does not answer in time, the key goes when the TTL runs out,
    /// since nobody renews it any more; the error says so.
    pub async fn deregister(self, client: &Client, timeout: Duration) -> Result<()> {
        self.renewer.abort();
        let (id, key, ttl) = (self.lease_id, self.key.clone(), self.ttl);
        let mut client = client.clone();
        match tokio::time::timeout(timeout, client.lease_revoke(id)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(anyhow!(e).context(format!(
                "revoke lease {id:016x}; {key} goes when its TTL of {ttl}s runs out"
            ))),
            Err(_) => bail!(
                "revoke lease {id:016x}: etcd did not answer within {timeout:?}; {key} goes when its TTL \
                 of {ttl}s runs out, since nobody renews it now"
            ),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

// ---------------------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------------------

/// The instances of one service, as etcd holds them, followed change by change.
///
/// Use it in a client of a service (a load balancer, a caller picking an instance): the set it keeps is
/// every `<id> = <address>` under the service's prefix, as of [`next_revision`](Self::next_revision) - 1.
/// The simplest way is [`changed`](Self::changed) in a loop: its first call returns the current set, every
/// later call the set after the next change. It rides out etcd restarts (the watch is opened again from
/// the revision after the last change applied, with growing pauses) and compaction (the set is read
/// again, and watched from right after that read).
///
/// The building blocks are public too, for a loop of your own (`src/watcher.rs` has one):
/// [`load`](Self::load) a GET, [`apply`](Self::apply) each watch response, and [`open`](Self::open) or
/// [`reload`](Self::reload) the watch when it breaks or its history was compacted.
#[derive(Debug)]
pub struct InstanceWatch {
    prefix: String,
    instances: BTreeMap<String, String>,
    /// The first revision whose changes are not in `instances` yet; `None` before the first read.
    next_revision: Option<i64>,
    /// The open watch, between two calls of `changed`.
    stream: Option<WatchStream>,
    /// Watches in a row that broke before they delivered anything, and when the last one was opened.
    quick_breaks: Backoff,
    opened_at: Option<Instant>,
    delivered: bool,
}

/// A watch that etcd has confirmed, from [`InstanceWatch::open`] or [`InstanceWatch::reload`].
#[derive(Debug)]
pub struct OpenWatch {
    /// Read changes with `stream.message()`; stop with `stream.cancel(watch_id)`.
    pub stream: WatchStream,
    /// etcd's name for this watch on the stream, needed to cancel it.
    pub watch_id: i64,
}

/// A watch that stayed open this long counts as one that worked, even if nothing changed meanwhile.
const STABLE: Duration = Duration::from_secs(10);

impl InstanceWatch {
    /// Follows the keys under `prefix`, for instance `/services/api/`. End it with `/`: without it,
    /// `/services/api` would also cover the service `/services/api2`.
    pub fn new(prefix: impl Into<String>) -> InstanceWatch {
        InstanceWatch {
            prefix: prefix.into(),
            instances: BTreeMap::new(),
            next_revision: None,
            stream: None,
            quick_breaks: Backoff::default(),
            opened_at: None,
            delivered: false,
        }
    }

    /// The instances known so far: id (the key without the prefix) to address, sorted by id.
    pub fn instances(&self) -> &BTreeMap<String, String> {
        &self.instances
    }

    /// The first revision whose changes are not applied yet; `None` before the first read.
    pub fn next_revision(&self) -> Option<i64> {
        self.next_revision
    }

    /// Takes the set from a GET of every key under the prefix (`GetOptions::new().with_prefix()`). A GET
    /// is a snapshot at the store revision in its header, so the changes to apply next are those from
    /// that revision + 1: open the watch from there.
    pub fn load(&mut self, got: &GetResponse) {
        self.instances = got
            .kvs()
            .iter()
            .filter_map(|kv| {
                let id = self.id_of(kv.key())?;
                Some((id, String::from_utf8_lossy(kv.value()).into_owned()))
            })
            .collect();
        self.next_revision = Some(got.header().map_or(0, |h| h.revision()) + 1);
        self.delivered = true;
    }

    /// Applies the events of one watch response; returns whether the set changed. A PUT adds an instance
    /// or changes its address, a DELETE (deregistered, or its lease expired) removes it. Events older than
    /// [`next_revision`](Self::next_revision) were applied already and are skipped.
    pub fn apply(&mut self, response: &WatchResponse) -> bool {
        let mut changed = false;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            if self
                .next_revision
                .is_some_and(|next| kv.mod_revision() < next)
            {
                continue;
            }
            if let Some(id) = self.id_of(kv.key()) {
                changed |= match event.event_type() {
                    EventType::Put => {
                        let addr = String::from_utf8_lossy(kv.value()).into_owned();
                        self.instances.insert(id, addr.clone()).as_ref() != Some(&addr)
                    }
                    EventType::Delete => self.instances.remove(&id).is_some(),
                };
            }
            self.next_revision = Some(kv.mod_revision() + 1);
            self.delivered = true;
        }
        changed
    }

    /// Waits for the set to change, and returns it. The first call returns the current set (unless you
    /// [`load`](Self::load)ed a read yourself: then it waits for the first change after that read).
    ///
    /// Retries what a retry can fix: a lost connection or an etcd restart re-opens the watch from the
    /// revision after the last change applied (so nothing is missed or applied twice), a compacted
    /// history reads the set again; `on_retry(attempt, error, pause)` is called after each failed
    /// attempt. Returns an error only when etcd refuses the watch or on an error retrying cannot fix
    /// (not [`is_transient`]). Each attempt is bounded by `attempt_timeout`. It is safe to drop while it waits
    /// (in `tokio::select!` with a shutdown signal): the next call opens a new watch where this one was.
    pub async fn changed(
        &mut self,
        client: &Client,
        attempt_timeout: Duration,
        mut on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<&BTreeMap<String, String>> {
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None if self.next_revision.is_none() => {
                let opened = self.open(client, attempt_timeout, &mut on_retry).await?;
                self.stream = Some(opened.stream);
                return Ok(&self.instances);
            }
            None => {
                self.open(client, attempt_timeout, &mut on_retry)
                    .await?
                    .stream
            }
        };
        loop {
            match stream.message().await {
                // The history we asked for is gone: read the set again, and watch after that read.
                Ok(Some(resp)) if resp.canceled() && resp.compact_revision() > 0 => {
                    debug!(
                        "revision {:?} of {} was compacted; reading the set again",
                        self.next_revision, self.prefix
                    );
                    let before = self.instances.clone();
                    stream = self
                        .reload(client, attempt_timeout, &mut on_retry)
                        .await?
                        .stream;
                    if self.instances != before {
                        self.stream = Some(stream);
                        return Ok(&self.instances);
                    }
                }
                Ok(Some(resp)) if resp.canceled() => {
                    bail!(
                        "etcd canceled the watch on {}: {}",
                        self.prefix,
                        resp.cancel_reason()
                    )
                }
                Ok(Some(resp)) => {
                    if self.apply(&resp) {
                        self.stream = Some(stream);
                        return Ok(&self.instances);
                    }
                }
                Err(e) if !is_transient(&e) => {
                    return Err(anyhow!(e).context(format!("watch {}", self.prefix)))
                }
                // etcd restarted, the network dropped: open again from where we were.
                Ok(None) | Err(_) => {
                    debug!("the watch on {} broke; re-opening it", self.prefix);
                    stream = self
                        .open(client, attempt_timeout, &mut on_retry)
                        .await?
                        .stream;
                }
            }
        }
    }

    /// Opens the watch from [`next_revision`](Self::next_revision) (after reading the set first, if it was
    /// never read), and waits until etcd confirms it. Use it to open the watch again after its stream ended
    /// or failed: the changes made meanwhile are still in etcd's history and come first.
    ///
    /// Retries with growing pauses ([`Backoff`]) until etcd answers, each attempt bounded by
    /// `attempt_timeout`, calling `on_retry(attempt, error, pause)` after each failure; a watch that broke
    /// again before it delivered anything also makes the next open wait longer, so that a stream failing
    /// at once every time cannot make a busy loop. It fails only on an error retrying cannot fix.
    ///
    /// If that part of the history was compacted, etcd confirms the watch, then cancels it with
    /// `compact_revision()` set: call [`reload`](Self::reload) then.
    pub async fn open(
        &mut self,
        client: &Client,
        attempt_timeout: Duration,
        on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<OpenWatch> {
        self.open_with_backoff(client, attempt_timeout, false, on_retry)
            .await
    }

    /// Reads the set again with one GET, then opens the watch from that read's revision + 1. Use it when
    /// a response says `canceled()` with `compact_revision() > 0`: the changes since
    /// [`next_revision`](Self::next_revision) cannot be replayed, but the state they led to can be read.
    /// Retries like [`open`](Self::open).
    pub async fn reload(
        &mut self,
        client: &Client,
        attempt_timeout: Duration,
        on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<OpenWatch> {
        self.open_with_backoff(client, attempt_timeout, true, on_retry)
            .await
    }

    async fn open_with_backoff(
        &mut self,
        client: &Client,
        attempt_timeout: Duration,
        read_first: bool,
        mut on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<OpenWatch> {
        // A watch that opened fine and broke before delivering anything counts as a failure too.
        let quick = self
            .opened_at
            .take()
            .is_some_and(|at| !self.delivered && at.elapsed() < STABLE);
        if quick {
            let pause = self.quick_breaks.next_pause();
            debug!("the last watch broke before delivering anything; waiting {pause:?} first");
            tokio::time::sleep(pause).await;
        } else {
            self.quick_breaks.reset();
        }
        let mut backoff = Backoff::default();
        loop {
            let read_first = read_first || self.next_revision.is_none();
            let attempt = self.try_open(client, read_first);
            let error = match tokio::time::timeout(attempt_timeout, attempt).await {
                Ok(Ok(opened)) => {
                    self.opened_at = Some(Instant::now());
                    self.delivered = false;
                    return Ok(opened);
                }
                Ok(Err(e)) => match e.downcast_ref::<etcd_client::Error>() {
                    Some(etcd) if !is_transient(etcd) => return Err(e),
                    _ => e,
                },
                Err(_) => anyhow!("etcd did not answer within {attempt_timeout:?}"),
            };
            let pause = backoff.next_pause();
            debug!("opening the watch on {} failed: {error:#}", self.prefix);
            on_retry(backoff.failures(), &error, pause);
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt: (the GET, then) the watch and etcd's confirmation.
    async fn try_open(&mut self, client: &Client, read_first: bool) -> Result<OpenWatch> {
        let prefix = self.prefix.clone();
        if read_first {
            let got = client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE)
                .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
                .await
                .with_context(|| format!("read the instances under {prefix}"))?;
            self.load(&got);
        }
        let from = self
            .next_revision
            .expect("the set was read before, so the next revision is known");
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        let mut stream = client
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE)
            .watch(prefix.as_str(), Some(options))
            .await
            .with_context(|| format!("watch {prefix}"))?;
        // `watch` returns once the stream is open; the watch exists when etcd answers `created`.
        let created = stream
            .message()
            .await
            .with_context(|| format!("wait for etcd to confirm the watch on {prefix}"))?
            .ok_or_else(|| {
                anyhow!("etcd closed the stream before confirming the watch on {prefix}")
            })?;
        if created.canceled() && created.compact_revision() == 0 {
            bail!(
                "etcd refused the watch on {prefix}: {}",
                created.cancel_reason()
            );
        }
        debug!(
            "watch {} on {prefix} open from revision {from}",
            created.watch_id()
        );
        Ok(OpenWatch {
            watch_id: created.watch_id(),
            stream,
        })
    }

    /// The instance ID in a key under the prefix: the rest of the key.
    fn id_of(&self, key: &[u8]) -> Option<String> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?;
        Some(String::from_utf8_lossy(rest).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_id_is_the_key_without_the_prefix() {
        let watch = InstanceWatch::new("/services/api/");
        assert_eq!(watch.id_of(b"/services/api/a").as_deref(), Some("a"));
        assert_eq!(watch.id_of(b"/services/api2/a"), None);
    }
}
