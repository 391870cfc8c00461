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
use etcd_client::{
    Client, Compare, CompareOp, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use log::debug;
use recipes::errors::one_line;
use recipes::kept_lease::{KeptLease, Renewal};
use recipes::shutdown::Shutdown;
use tokio::time::Instant;

use crate::cli::{self, RegisterArgs};

pub async fn register(
    mut client: Client,
    args: &cli::Args,
    flags: &RegisterArgs,
    prefix: &str,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let key = format!("{prefix}/{}/{}", flags.service, flags.id);
    let (name, addr) = (format!("{}/{}", flags.service, flags.id), &flags.addr);
    let timeout = args.connect.dial_timeout;

    // 1. Grant a lease: the key will live as long as we renew it, and TTL seconds more. etcd may grant
    //    more than we asked (it raises very short TTLs), so the rest uses the TTL from the reply.
    let granted = tokio::select! {
        granted = client.lease_grant(flags.ttl, None) => {
            granted.with_context(|| format!("grant a lease of {}s", flags.ttl))?
        }
        signal = shutdown.recv() => {
            println!("{signal}: stopped before registering; nothing was written");
            return Ok(());
        }
    };
    let (lease, ttl) = (granted.id(), granted.ttl());
    // etcdctl prints lease IDs as 16 hex digits: the same form can be pasted into `etcdctl lease ...`.
    println!("1. granted lease {lease:016x} with a TTL of {ttl}s");

    // 2. Write the key only if it is free: a transaction whose guard compares the key's create revision
    //    with 0, the create revision of a key that does not exist. A plain PUT would take over the key of
    //    another instance that picked the same ID (or of this one, killed less than a TTL ago), and its
    //    lease would no longer cover it. If the key exists, the same transaction reads it, to say who
    //    holds it.
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            addr.as_str(),
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let written = tokio::select! {
        written = client.txn(txn) => written,
        signal = shutdown.recv() => {
            // Revoking deletes the key too, in case the transaction went through before we stopped.
            let _ = tokio::time::timeout(timeout, client.lease_revoke(lease)).await;
            println!("{signal}: stopped while registering; revoked lease {lease:016x}, so nothing stays");
            return Ok(());
        }
    };
    let written = match written {
        Ok(written) => written,
        Err(e) => {
            // Nobody will renew the lease; revoking it now spares etcd a TTL of keeping it.
            let _ = tokio::time::timeout(timeout, client.lease_revoke(lease)).await;
            return Err(anyhow!(e).context(format!("register {key}")));
        }
    };
    if !written.succeeded() {
        let _ = tokio::time::timeout(timeout, client.lease_revoke(lease)).await;
        let holder = written
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(got) => got.kvs().first().cloned(),
                _ => None,
            })
            .context("etcd said the key exists but returned nothing for it")?;
        //  How long the holder's entry stays if nobody renews it: its lease's remaining TTL.
        let stays = match holder.lease() {
            0 => "on no lease, so it stays until someone deletes it".to_string(),
            other => match tokio::time::timeout(timeout, client.lease_time_to_live(other, None)).await {
                Ok(Ok(left)) if left.ttl() >= 0 => format!(
                    "on lease {other:016x}, {}s left of its {}s TTL: if that instance was killed, its \
                     entry goes when that runs out",
                    left.ttl(),
                    left.granted_ttl()
                ),
                _ => format!("on lease {other:016x}"),
            },
        };
        bail!(
            "{name} is already registered by another instance: {key} = {} (created at revision {}, {stays}); \
             stop that instance or choose another --id",
            String::from_utf8_lossy(holder.value()),
            holder.create_revision()
        );
    }
    println!(
        "2. registered {name}: {key} = {addr} on lease {lease:016x} at revision {} (written only because \
         the key was free)",
        written.header().map_or(0, |h| h.revision())
    );

    // 3. Keep the lease alive. etcd-client hands back the two ends of a keep-alive stream: `keep_alive()`
    //    sends one renewal, `message()` reads one answer; nothing renews unless we send it. Opening the
    //    stream renews once. `KeptLease` (src/lib.rs, the keepalive topic's) renews every TTL/3 and
    //    re-opens the stream when it breaks, while the lease can still be alive.
    let (keeper, answers) = match client.lease_keep_alive(lease).await {
        Ok(ends) => ends,
        Err(e) => {
            let _ = tokio::time::timeout(timeout, client.lease_revoke(lease)).await;
            return Err(
                anyhow!(e).context(format!("open a keep-alive stream for lease {lease:016x}"))
            );
        }
    };
    let mut kept = KeptLease::new(lease, ttl, keeper, answers);
    println!(
        "3. keeping {name} registered: renewing lease {lease:016x} every {:.1?}; Ctrl-C or SIGTERM deregisters it",
        kept.renew_every()
    );

    // 4. Renew until stopped. Renewals print only with RUST_LOG=debug; what a user must know is printed.
    loop {
        let renewal = tokio::select! {
            signal = shutdown.recv() => return deregister(&mut client, &key, &name, &kept, signal, timeout).await,
            renewal = kept.renew_when_due() => renewal,
        };
        match renewal {
            Ok(Renewal::Alive { ttl }) => debug!("lease {lease:016x} renewed: {ttl}s again"),
            Ok(Renewal::Gone) => {
                // etcd's TTL 0 does not say why, nor what became of the key: read it back.
                let why = kept.why_gone();
                let now = match tokio::time::timeout(timeout, client.get(key.as_str(), None)).await
                {
                    Ok(Ok(got)) if got.kvs().is_empty() => format!("etcd deleted {key} with it"),
                    Ok(Ok(_)) => {
                        format!("{key} is still there, written by another client on another lease")
                    }
                    _ => format!("etcd deleted {key} with it, if it was still on it"),
                };
                bail!("{name} is no longer registered: lease {lease:016x} is gone ({why}); {now}");
            }
            Err(broken) => {
                println!(
                    "   keep-alive stream broke ({}); re-opening it before the TTL runs out",
                    one_line(&broken)
                );
                tokio::select! {
                    signal = shutdown.recv() => return deregister(&mut client, &key, &name, &kept, signal, timeout).await,
                    reopened = kept.reopen(&mut client) => reopened?,
                }
                println!("   keep-alive stream re-opened; lease {lease:016x} renewed, {name} still registered");
            }
        }
    }
}

/// 5. Deregister on Ctrl-C or SIGTERM: revoke the lease, so etcd deletes the key now, and clients stop
///    calling an instance that is going away, instead of up to a TTL later.
///
///    Say what it really did: ask etcd which keys the lease holds first (`with_keys`), because another
///    client may have overwritten ours, which takes it off the lease (a revoke then leaves it alone). Both
///    calls share one --dial-timeout, so stopping never hangs on an etcd that stopped answering; the key
///    then goes when the TTL runs out, since nobody renews it any more.
async fn deregister(
    client: &mut Client,
    key: &str,
    name: &str,
    kept: &KeptLease,
    why: &str,
    timeout: Duration,
) -> Result<()> {
    let (lease, ttl) = (kept.id, kept.ttl);
    let until = Instant::now() + timeout;
    let no_answer = || {
        anyhow!(
            "{why}: etcd did not answer within {timeout:?}, so lease {lease:016x} may not be revoked; {key} \
             goes when its TTL of {ttl}s runs out, since nobody renews it now"
        )
    };
    let options = LeaseTimeToLiveOptions::new().with_keys();
    let attached =
        match tokio::time::timeout_at(until, client.lease_time_to_live(lease, Some(options))).await
        {
            Ok(Ok(reply)) => Some(reply.keys().iter().any(|k| k.as_slice() == key.as_bytes())),
            Ok(Err(e)) => {
                debug!("lease_time_to_live({lease:016x}) failed: {e}");
                None
            }
            Err(_) => return Err(no_answer()),
        };
    tokio::time::timeout_at(until, client.lease_revoke(lease))
        .await
        .map_err(|_| no_answer())?
        .with_context(|| format!("{why}: revoke lease {lease:016x}"))?;
    match attached {
        Some(true) | None => println!(
            "{why}: deregistered {name}: revoked lease {lease:016x}, so etcd deleted {key} at once"
        ),
        Some(false) => println!(
            "{why}: revoked lease {lease:016x}; {key} was no longer on it (deleted or overwritten by another \
             client), so the revoke deleted nothing"
        ),
    }
    Ok(())
}
