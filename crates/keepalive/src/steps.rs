//! What `main.rs` needs around its steps: the checks that keep it from taking over a key it did not
//! write, and what it says when the lease is gone or a revoke could not be confirmed.

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, GetResponse, TxnResponse};
use recipes::kept_lease::KeptLease;
use recipes::shutdown::ExitBudget;

use crate::cli::Args;

/// Refuses a key that exists: on a lease, etcd would delete it when the lease ends. Called before
/// anything is granted, so a refused run leaves etcd as it found it.
pub async fn key_is_free(client: &mut Client, key: &str) -> Result<()> {
    let existing = client
        .get(key, None)
        .await
        .with_context(|| format!("check that {key} does not exist yet"))?;
    if !existing.kvs().is_empty() {
        bail!("{}", taken(key));
    }
    Ok(())
}

/// The revision step 2's put-if-absent transaction wrote at. If it wrote nothing (the key exists now, or
/// etcd failed), the lease holds nothing of ours: it is revoked, within --dial-timeout, rather than left
/// ticking, and the error says why nothing was put.
pub async fn revoke_unless_put(
    client: &mut Client,
    put: Result<TxnResponse, etcd_client::Error>,
    lease_id: i64,
    args: &Args,
) -> Result<i64> {
    let (key, id) = (&args.key, format!("{lease_id:016x}"));
    let not_put = match put {
        Ok(put) if put.succeeded() => return Ok(put.header().map_or(0, |h| h.revision())),
        Ok(_) => anyhow!("{}", taken(key)),
        Err(e) => anyhow::Error::new(e).context(format!("put {key} on lease {id}")),
    };
    let mut budget = ExitBudget::new(args.connect.dial_timeout);
    let revoked = budget.call("revoke", client.lease_revoke(lease_id)).await;
    log::debug!("revoking lease {id}, as nothing was put on it: {revoked:?}");
    Err(not_put)
}

/// The error that ends the program when etcd answers a renewal with TTL 0. etcd does not say why the
/// lease is gone; the timing sometimes can (`why_gone`). Nor does it say what became of the key: it is
/// read back (within --dial-timeout) rather than assumed deleted.
pub async fn gone(client: &mut Client, lease: &KeptLease, args: &Args) -> anyhow::Error {
    let (key, why) = (&args.key, lease.why_gone());
    let mut budget = ExitBudget::new(args.connect.dial_timeout);
    let read = budget.call("read", client.get(key.as_str(), None)).await;
    let key_now = match read.map(|got| got.kvs().is_empty()) {
        Ok(true) => format!("etcd deleted {key} with it"),
        Ok(false) => format!(
            "{key} is still there: another client overwrote it, which took it off the lease"
        ),
        Err(_) => format!("etcd deleted {key} with it if it was still on the lease"),
    };
    let id = lease.id;
    anyhow!("lease {id:016x} is gone: etcd answered a renewal with TTL 0; {why}; {key_now}")
}

/// The error of step 5's revoke. etcd's own error is passed on as it is; when etcd did not answer
/// within the budget, the message says what that means for the key.
pub fn revoke_failed(e: anyhow::Error, args: &Args, lease: &KeptLease, why: &str) -> anyhow::Error {
    if e.downcast_ref::<etcd_client::Error>().is_some() {
        return e; // etcd answered, with an error
    }
    let (key, limit, id, ttl) = (&args.key, args.connect.dial_timeout, lease.id, lease.ttl);
    anyhow!(
        "{why}: etcd did not answer within {limit:?}, so lease {id:016x} may not be revoked; \
         {key} goes when its TTL of {ttl}s runs out, since nobody renews it now"
    )
}

/// What step 5's revoke did to the key, given the key as read just before it (`before`).
pub fn what_the_revoke_did(
    before: Result<GetResponse>,
    args: &Args,
    lease: &KeptLease,
    why: &str,
) -> String {
    let (key, id) = (&args.key, format!("{:016x}", lease.id));
    // The lease the key was on: Some(0) for none, None for a key that was gone.
    match before.map(|got| got.kvs().first().map(|kv| kv.lease())) {
        Ok(Some(on)) if on == lease.id => {
            format!("{why}: revoked lease {id}, so etcd deleted {key} at once")
        }
        Ok(Some(_)) => format!(
            "{why}: revoked lease {id}; {key} was overwritten by another client and is no longer on it, so it stays"
        ),
        Ok(None) => format!("{why}: revoked lease {id}; {key} was already gone, so it deleted nothing"),
        Err(e) => {
            log::debug!("reading {key} before the revoke failed: {e:#}");
            format!("{why}: revoked lease {id}, so etcd deleted {key} if it was still on it")
        }
    }
}

/// Why this program refuses a key that exists, and what to do: one line.
fn taken(key: &str) -> String {
    format!(
        "{key} already exists and this program did not create it: on a lease, etcd would delete it when \
         the lease ends; choose another key with --key, or remove it first with `etcdctl del {key}`"
    )
}
