//! The reusable part of the `election` topic that is specific to elections: a leader query that tells
//! "nobody leads" from a failure. The session to campaign with (a lease kept alive in the background) is
//! `recipes::kept_lease::Session`, shared with the lock topic.
//!
//! Every other call of the topic (`lease_grant`, `campaign`, `proclaim`, `leader`, `observe`, `resign`,
//! `lease_revoke`) is one `etcd-client` call, and `src/main.rs` (the demo), `src/candidate.rs` or
//! `src/observer.rs` makes it at the step that explains it. This file depends only on `etcd-client`, so it
//! can be copied into a service as is (see the topic README, "Use it in your project").
//!
//! How etcd's election works, in three sentences. Every candidate writes a key `<name>/<its lease id in
//! hex>` attached to its lease, with its value (its address, its ID); the key with the lowest create
//! revision is the leader, and the others' `campaign` calls wait for the keys created before theirs to be
//! deleted. Resigning deletes the key; so does the lease expiring or being revoked, which is how a crashed
//! leader is replaced. These are the keys Go's `concurrency.Election` writes, so Go and Rust candidates can
//! stand in one election.

use etcd_client::{Client, KeyValue};

/// The message etcd's election service answers `leader` with when no candidate holds the election
/// (Go's `concurrency.ErrElectionNoLeader`).
pub const NO_LEADER: &str = "election: no leader";

/// Who leads election `name` right now: the leader's key-value (its key `<name>/<lease hex>`, its value,
/// and its create revision), or `None` when nobody does.
///
/// Use it instead of a bare `client.leader(name)` wherever "nobody leads" is a normal answer (a status
/// page, a client deciding whom to call). The election service reports an empty election as an error,
/// with gRPC code UNKNOWN, the same code as a broken connection: a retry loop that treats every UNKNOWN as
/// transient would retry it forever, and one that treats it as fatal would die on an empty election.
/// This tells the two apart by etcd's message, and returns every other error unchanged.
pub async fn current_leader(
    client: &mut Client,
    name: &str,
) -> std::result::Result<Option<KeyValue>, etcd_client::Error> {
    match client.leader(name).await {
        Ok(mut resp) => Ok(resp.take_kv()),
        Err(etcd_client::Error::GRpcStatus(status)) if status.message().contains(NO_LEADER) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
