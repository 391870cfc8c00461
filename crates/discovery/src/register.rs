//! `discovery register`: one instance of a service, registered until Ctrl-C or SIGTERM.
//!
//! It writes `<prefix>/<service>/<id>` = `--addr` only if that key is free, on a lease it keeps alive, and
//! revokes the lease on the way out, which deletes the key at once. Each `etcd-client` call is made here,
//! at the step that explains it. Run it next to `discovery watch`:
//!
//! ```text
//! cargo run -p discovery -- register --service api --id a --addr 127.0.0.1:8001
//! ```

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use discovery::Holder;
use etcd_client::{Client, Compare, CompareOp, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp};
use log::debug;
use recipes::errors::one_line;
use recipes::kept_lease::{KeptLease, Renewal};
use recipes::shutdown::{ExitBudget, Shutdown};

use crate::cli::{self, RegisterArgs};

/// One instance, as the steps below need it.
struct Instance {
    key: String,
    /// `<service>/<id>`, as the messages name it.
    name: String,
    /// Every call made on the way out is bounded by this (--dial-timeout).
    timeout: Duration,
}

pub async fn run(
    mut client: Client,
    args: &cli::Args,
    flags: &RegisterArgs,
    prefix: &str,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let me = Instance {
        key: format!("{prefix}/{}/{}", flags.service, flags.id),
        name: format!("{}/{}", flags.service, flags.id),
        timeout: args.connect.dial_timeout,
    };

    // 1. Grant a lease: the key will live as long as we renew it, and TTL seconds more. etcd may grant
    //    more than we asked (it raises very short TTLs), so the rest uses the TTL from the reply.
    // Go: lease, err := cli.Grant(ctx, ttl)
    let granted = match shutdown
        .unless_stopped(client.lease_grant(flags.ttl, None))
        .await
    {
        Ok(granted) => granted.with_context(|| format!("grant a lease of {}s", flags.ttl))?,
        Err(signal) => {
            println!("{signal}: stopped before registering; nothing was written");
            return Ok(());
        }
    };
    let (lease, ttl) = (granted.id(), granted.ttl());
    // etcdctl prints lease IDs as 16 hex digits: the same form can be pasted into `etcdctl lease ...`.
    println!("1. granted lease {lease:016x} with a TTL of {ttl}s");

    // 2. Write the key only if it is free (see `put_if_absent`).
    if !me
        .put_if_absent(&mut client, &flags.addr, lease, shutdown)
        .await?
    {
        return Ok(());
    }

    // 3. Keep the lease alive. etcd-client hands back the two ends of a keep-alive stream: `keep_alive()`
    //    sends one renewal, `message()` reads one answer; nothing renews unless we send it. Opening the
    //    stream renews once. `KeptLease` (recipes::kept_lease) renews every TTL/3 and re-opens the stream
    //    when it breaks, while the lease can still be alive.
    // Go: ch, err := cli.KeepAlive(ctx, lease), whose goroutine is what `KeptLease` does here, in step 4.
    let (keeper, answers) = match client.lease_keep_alive(lease).await {
        Ok(ends) => ends,
        Err(e) => {
            me.revoke_quietly(&mut client, lease).await;
            return Err(
                anyhow!(e).context(format!("open a keep-alive stream for lease {lease:016x}"))
            );
        }
    };
    let mut kept = KeptLease::new(lease, ttl, keeper, answers);
    println!(
        "3. keeping {} registered: renewing lease {lease:016x} every {:.1?}; Ctrl-C or SIGTERM deregisters it",
        me.name,
        kept.renew_every()
    );

    let signal = me.keep_renewing(&mut client, &mut kept, shutdown).await?;
    me.deregister(&mut client, &kept, signal).await
}

impl Instance {
    /// 2. Write the key only if it is free: a transaction whose guard compares the key's create revision
    ///    with 0, the create revision of a key that does not exist. A plain PUT would take over the key of
    ///    another instance that picked the same ID (or of this one, killed less than a TTL ago), and its
    ///    lease would no longer cover it. If the key exists, the same transaction reads it, to say who
    ///    holds it. Returns whether it was written (false: stopped by a signal, with nothing left behind).
    async fn put_if_absent(
        &self,
        client: &mut Client,
        addr: &str,
        lease: i64,
        shutdown: &mut Shutdown,
    ) -> Result<bool> {
        let key = self.key.as_str();
        // Go: cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
        //     Then(clientv3.OpPut(key, addr, clientv3.WithLease(lease))).Else(clientv3.OpGet(key)).Commit()
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                addr,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let written = match shutdown.unless_stopped(client.txn(txn)).await {
            Ok(Ok(written)) => written,
            Ok(Err(e)) => {
                // Nobody will renew the lease; revoking it now spares etcd a TTL of keeping it.
                self.revoke_quietly(client, lease).await;
                return Err(anyhow!(e).context(format!("register {key}")));
            }
            Err(signal) => {
                // Revoking deletes the key too, in case the transaction went through before we stopped.
                self.revoke_quietly(client, lease).await;
                println!("{signal}: stopped while registering; revoked lease {lease:016x}, so nothing stays");
                return Ok(false);
            }
        };
        if !written.succeeded() {
            self.revoke_quietly(client, lease).await;
            let holder = Holder::in_reply(key, &written)
                .context("etcd said the key exists but returned nothing for it")?;
            bail!(self.taken_by(client, &holder).await);
        }
        println!(
            "2. registered {}: {key} = {addr} on lease {lease:016x} at revision {} (written only because \
             the key was free)",
            self.name,
            written.header().map_or(0, |h| h.revision())
        );
        Ok(true)
    }

    /// Why the key is not ours: who holds it, and how long the holder's entry stays if nobody renews it
    /// (its lease's remaining TTL).
    async fn taken_by(&self, client: &mut Client, holder: &Holder) -> String {
        let stays = match holder.lease {
            0 => "on no lease, so it stays until someone deletes it".to_string(),
            other => match tokio::time::timeout(self.timeout, client.lease_time_to_live(other, None))
                .await
            {
                Ok(Ok(left)) if left.ttl() >= 0 => format!(
                    "on lease {other:016x}, {}s left of its {}s TTL: if that instance was killed, its \
                     entry goes when that runs out",
                    left.ttl(),
                    left.granted_ttl()
                ),
                _ => format!("on lease {other:016x}"),
            },
        };
        format!(
            "{} is already registered by another instance: {} = {} (created at revision {}, {stays}); \
             stop that instance or choose another --id",
            self.name, holder.key, holder.addr, holder.create_revision
        )
    }

    /// Revokes a lease that will not be used, bounded by --dial-timeout; a failure only means it expires.
    async fn revoke_quietly(&self, client: &mut Client, lease: i64) {
        let revoke = client.lease_revoke(lease);
        if let Err(e) = ExitBudget::new(self.timeout).call("revoke", revoke).await {
            debug!("revoke lease {lease:016x}: {e:#}");
        }
    }

    /// 4. Renew until Ctrl-C or SIGTERM, and return its name. Each renewal is one call of `KeptLease`;
    ///    renewals print only with RUST_LOG=debug. What a user must know is printed: a broken stream and
    ///    its re-opening, or a lease that is gone, which ends the program.
    async fn keep_renewing(
        &self,
        client: &mut Client,
        kept: &mut KeptLease,
        shutdown: &mut Shutdown,
    ) -> Result<&'static str> {
        let lease = kept.id;
        loop {
            let renewal = match shutdown.unless_stopped(kept.renew_when_due()).await {
                Ok(renewal) => renewal,
                Err(signal) => return Ok(signal),
            };
            match renewal {
                Ok(Renewal::Alive { ttl }) => debug!("lease {lease:016x} renewed: {ttl}s again"),
                Ok(Renewal::Gone) => bail!(self.gone(client, kept).await),
                Err(broken) => {
                    println!(
                        "   keep-alive stream broke ({}); re-opening it before the TTL runs out",
                        one_line(&broken)
                    );
                    match shutdown.unless_stopped(kept.reopen(client)).await {
                        Ok(reopened) => reopened?,
                        Err(signal) => return Ok(signal),
                    }
                    println!(
                        "   keep-alive stream re-opened; lease {lease:016x} renewed, {} still registered",
                        self.name
                    );
                }
            }
        }
    }

    /// The lease is gone. etcd's TTL 0 does not say why, nor what became of the key: read it back.
    async fn gone(&self, client: &mut Client, kept: &KeptLease) -> String {
        let (key, lease, why) = (&self.key, kept.id, kept.why_gone());
        let now = match tokio::time::timeout(self.timeout, client.get(key.as_str(), None)).await {
            Ok(Ok(got)) if got.kvs().is_empty() => format!("etcd deleted {key} with it"),
            Ok(Ok(_)) => {
                format!("{key} is still there, written by another client on another lease")
            }
            _ => format!("etcd deleted {key} with it, if it was still on it"),
        };
        format!(
            "{} is no longer registered: lease {lease:016x} is gone ({why}); {now}",
            self.name
        )
    }

    /// 5. Deregister on Ctrl-C or SIGTERM: revoke the lease, so etcd deletes the key now, and clients stop
    ///    calling an instance that is going away, instead of up to a TTL later.
    ///
    ///    Say what it really did: ask etcd which keys the lease holds first (`with_keys`), because another
    ///    client may have overwritten ours, which takes it off the lease (a revoke then leaves it alone).
    ///    Both calls share one --dial-timeout (`ExitBudget`), so stopping never hangs on an etcd that
    ///    stopped answering; the key then goes when the TTL runs out, since nobody renews it any more.
    async fn deregister(&self, client: &mut Client, kept: &KeptLease, why: &str) -> Result<()> {
        let (key, name, lease, ttl) = (&self.key, &self.name, kept.id, kept.ttl);
        let mut budget = ExitBudget::new(self.timeout);
        // Go: cli.TimeToLive(ctx, lease, clientv3.WithAttachedKeys()), then cli.Revoke(ctx, lease)
        let options = LeaseTimeToLiveOptions::new().with_keys();
        let holds = client.lease_time_to_live(lease, Some(options));
        let attached = budget
            .call(format!("list the keys of lease {lease:016x}"), holds)
            .await
            .map(|reply| reply.keys().iter().any(|k| k.as_slice() == key.as_bytes()));
        if let Err(e) = &attached {
            debug!("{e:#}");
        }
        let revoke = client.lease_revoke(lease);
        budget.call(format!("revoke lease {lease:016x}"), revoke).await.with_context(|| {
            format!(
                "{why}: lease {lease:016x} may not be revoked; {key} goes when its TTL of {ttl}s runs out, \
                 since nobody renews it now"
            )
        })?;
        match attached {
            Ok(true) | Err(_) => println!(
                "{why}: deregistered {name}: revoked lease {lease:016x}, so etcd deleted {key} at once"
            ),
            Ok(false) => println!(
                "{why}: revoked lease {lease:016x}; {key} was no longer on it (deleted or overwritten by \
                 another client), so the revoke deleted nothing"
            ),
        }
        Ok(())
    }
}
