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
//! `src/main.rs` and the `register` and `watch` subcommands (`src/register.rs`, `src/watcher.rs`) make
//! each `etcd-client` call of the topic themselves, where they explain it; this file packs the same for a
//! service. What keeps it alive comes from the recipes: the lease is renewed by
//! `recipes::kept_lease::Session`, and the watch is a `recipes::resuming_watch::ResumingWatch`. To use it
//! in a service, copy those recipes (README.md, "Copy a recipe"), then this file.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetResponse, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse, WatchResponse,
};
use log::debug;
use recipes::kept_lease::Session;
use recipes::resuming_watch::{Delivery, ResumingWatch};

// ---------------------------------------------------------------------------------------------------------
// Registration
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

impl Holder {
    /// The holder of `key` in the reply of a put-if-absent transaction whose `or_else` reads the key
    /// (`TxnOp::get(key, None)`); `None` if the transaction wrote the key, so nobody else holds it.
    pub fn in_reply(key: &str, reply: &TxnResponse) -> Option<Holder> {
        if reply.succeeded() {
            return None;
        }
        reply.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(got) => got.kvs().first().map(|kv| Holder {
                key: key.to_string(),
                addr: String::from_utf8_lossy(kv.value()).into_owned(),
                lease: kv.lease(),
                create_revision: kv.create_revision(),
            }),
            _ => None,
        })
    }
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
/// The lease is renewed every TTL/3 by a [`Session`] (a `KeptLease` in a background task), which also
/// rides out a short etcd outage by re-opening its keep-alive stream for as long as the lease can still
/// be alive. Dropping it stops the renewals without deleting the key, which then goes when the TTL runs
/// out.
pub struct Registration {
    key: String,
    addr: String,
    create_revision: i64,
    session: Session,
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

    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            addr,
            Some(PutOptions::new().with_lease(id)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let reply = match client.txn(txn).await {
        Ok(reply) => reply,
        Err(e) => {
            revoke_quietly(&mut client, id).await;
            return Err(anyhow!(e).context(format!("register {key} if it is free")));
        }
    };
    if !reply.succeeded() {
        revoke_quietly(&mut client, id).await;
        // The compare and the read are one transaction, so the key the compare saw is the key read.
        let holder = Holder::in_reply(key, &reply)
            .context("etcd said the key exists but returned no holder")?;
        return Ok(Registered::Taken(holder));
    }
    let create_revision = reply.header().map_or(0, |h| h.revision());

    let session = match Session::start(&client, id, ttl).await {
        Ok(session) => session,
        Err(e) => {
            revoke_quietly(&mut client, id).await;
            return Err(e);
        }
    };
    debug!("registered {key} = {addr} on lease {id:016x} (ttl {ttl}s)");
    Ok(Registered::Now(Registration {
        key: key.to_string(),
        addr: addr.to_string(),
        create_revision,
        session,
    }))
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
        self.session.lease_id()
    }

    /// The TTL etcd granted, in seconds: how long the key outlives this process if it is killed.
    pub fn ttl(&self) -> i64 {
        self.session.ttl()
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
        self.session.lost().await
    }

    /// Deregisters at once: stops the renewals and revokes the lease (through `client`), which deletes
    /// the key, within `timeout`. If etcd does not answer in time, the key goes when the TTL runs out,
    /// since nobody renews it any more; the error says so.
    pub async fn deregister(self, client: &Client, timeout: Duration) -> Result<()> {
        let (id, key, ttl) = (self.lease_id(), self.key, self.session.ttl());
        drop(self.session);
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

// ---------------------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------------------

/// The instances of one service, as etcd holds them, followed change by change.
///
/// Use it in a client of a service (a load balancer, a caller picking an instance): the set it keeps is
/// every `<id> = <address>` under the service's prefix, as of [`next_revision`](Self::next_revision) - 1.
/// The simplest way is [`changed`](Self::changed) in a loop: its first call returns the current set, every
/// later call the set after the next change. It follows the prefix with a [`ResumingWatch`], so it rides
/// out etcd restarts (the watch is opened again from the revision after the last change applied, with
/// growing pauses) and compaction (the set is read again, and watched from right after that read).
///
/// The building blocks are public too, for a loop of your own (`src/watcher.rs` has one):
/// [`load`](Self::load) a GET, then [`apply`](Self::apply) each watch response.
#[derive(Debug)]
pub struct InstanceWatch {
    prefix: String,
    instances: BTreeMap<String, String>,
    /// The first revision whose changes are not in `instances` yet; `None` before the first read.
    next_revision: Option<i64>,
    /// The watch on the prefix, between two calls of `changed`; `None` until one is opened.
    watch: Option<ResumingWatch>,
}

impl InstanceWatch {
    /// Follows the keys under `prefix`, for instance `/services/api/`. End it with `/`: without it,
    /// `/services/api` would also cover the service `/services/api2`.
    pub fn new(prefix: impl Into<String>) -> InstanceWatch {
        InstanceWatch {
            prefix: prefix.into(),
            instances: BTreeMap::new(),
            next_revision: None,
            watch: None,
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
    /// that revision + 1: [`watch`](Self::watch) and [`changed`](Self::changed) watch from there.
    pub fn load(&mut self, got: &GetResponse) {
        self.take_set(got);
        self.watch = None;
    }

    fn take_set(&mut self, got: &GetResponse) {
        self.instances = got
            .kvs()
            .iter()
            .filter_map(|kv| {
                let id = self.id_of(kv.key())?;
                Some((id, String::from_utf8_lossy(kv.value()).into_owned()))
            })
            .collect();
        self.next_revision = Some(got.header().map_or(0, |h| h.revision()) + 1);
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
        }
        changed
    }

    /// Opens the watch on the prefix from [`next_revision`](Self::next_revision), right after the read
    /// you [`load`](Self::load)ed, and waits until etcd confirms it; returns the revision it starts from.
    /// [`changed`](Self::changed) opens it by itself: call this first to know it is open. Retries like
    /// `changed`.
    pub async fn watch(
        &mut self,
        client: &Client,
        attempt_timeout: Duration,
        on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<i64> {
        let from = self
            .next_revision
            .context("load a read of the set before watching it")?;
        let mut watch = ResumingWatch::new(self.prefix.as_str(), true, Some(from))
            .with_attempt_timeout(attempt_timeout);
        match watch.next(client, on_retry).await? {
            Delivery::Opened { from } | Delivery::Reopened { from } => {
                self.watch = Some(watch);
                Ok(from)
            }
            other => bail!(
                "a new watch on {} delivered {other:?} before it opened",
                self.prefix
            ),
        }
    }

    /// Waits for the set to change, and returns it. The first call returns the current set, read with one
    /// GET (unless you [`load`](Self::load)ed a read yourself: then it waits for the first change after
    /// that read).
    ///
    /// Retries what a retry can fix: a lost connection or an etcd restart re-opens the watch from the
    /// revision after the last change applied (so nothing is missed or applied twice), a compacted
    /// history reads the set again; `on_retry(attempt, error, pause)` is called after each failed
    /// attempt, each bounded by `attempt_timeout`. Returns an error only when etcd refuses the watch or on
    /// an error retrying cannot fix. It is safe to drop while it waits (in `tokio::select!` with a shutdown
    /// signal): the next call opens a new watch where this one was.
    pub async fn changed(
        &mut self,
        client: &Client,
        attempt_timeout: Duration,
        mut on_retry: impl FnMut(u32, &anyhow::Error, Duration),
    ) -> Result<&BTreeMap<String, String>> {
        let Some(from) = self.next_revision else {
            let mut watch = ResumingWatch::new(self.prefix.as_str(), true, None)
                .with_attempt_timeout(attempt_timeout);
            let got = watch.read_then_watch(client, on_retry).await?;
            self.take_set(&got);
            self.watch = Some(watch);
            return Ok(&self.instances);
        };
        // Taken out while it waits, so that a call dropped halfway leaves none: the next one opens anew.
        let mut watch = self.watch.take().unwrap_or_else(|| {
            ResumingWatch::new(self.prefix.as_str(), true, Some(from))
                .with_attempt_timeout(attempt_timeout)
        });
        loop {
            let changed = match watch.next(client, &mut on_retry).await? {
                Delivery::Opened { .. } | Delivery::Reopened { .. } => false,
                Delivery::Events(response) => self.apply(&response),
                // The history we needed was compacted: this is the set now, watched from right after.
                Delivery::CaughtUp(got) => {
                    let before = std::mem::take(&mut self.instances);
                    self.take_set(&got);
                    self.instances != before
                }
            };
            if changed {
                self.watch = Some(watch);
                return Ok(&self.instances);
            }
        }
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
