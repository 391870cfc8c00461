//! The client calls behind `cargo run -p kv`, one small function per step, so each can be copied into a
//! service on its own. `main.rs` calls them in order and prints what they return.

use anyhow::{Context, Result};
use etcd_client::{Client, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};
use etcd_connect::show_bytes;

/// One key as etcd stores it, with the revisions that make etcd an MVCC store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// The store revision at which this key was created (reset when it is deleted and put again).
    pub create_revision: i64,
    /// The store revision of the last write to this key.
    pub mod_revision: i64,
    /// How many times this key was written since it was created.
    pub version: i64,
}

impl From<&etcd_client::KeyValue> for Entry {
    fn from(kv: &etcd_client::KeyValue) -> Self {
        Entry {
            key: show_bytes(kv.key()),
            value: show_bytes(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
        }
    }
}

/// The revision of the whole store after a call: every write anywhere bumps it by one.
fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

/// Step 1: PUT. Returns the store revision this write created.
pub async fn put(client: &mut Client, key: &str, value: &str) -> Result<i64> {
    let resp = client
        .put(key, value, None)
        .await
        .with_context(|| format!("put {key}"))?;
    Ok(revision_of(resp.header()))
}

/// Step 2: GET one key. `None` when the key does not exist: etcd answers with zero entries, not an error.
pub async fn get(client: &mut Client, key: &str) -> Result<Option<Entry>> {
    let resp = client
        .get(key, None)
        .await
        .with_context(|| format!("get {key}"))?;
    Ok(resp.kvs().first().map(Entry::from))
}

/// Step 3: PUT that also hands back what it overwrote, in the same round trip.
///
/// Without `prev_kv`, "read then write" takes two calls and another client can write in between.
pub async fn put_returning_previous(
    client: &mut Client,
    key: &str,
    value: &str,
) -> Result<(i64, Option<Entry>)> {
    let resp = client
        .put(key, value, Some(PutOptions::new().with_prev_key()))
        .await
        .with_context(|| format!("put {key} with prev_kv"))?;
    Ok((revision_of(resp.header()), resp.prev_key().map(Entry::from)))
}

/// Step 4: every key under a prefix, sorted by key. Keys in etcd are just bytes; a "directory" is a
/// prefix by convention, and a range read over it is one request.
pub async fn list_prefix(client: &mut Client, prefix: &str) -> Result<Vec<Entry>> {
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Key, SortOrder::Ascend);
    let resp = client
        .get(prefix, Some(options))
        .await
        .with_context(|| format!("get prefix {prefix}"))?;
    Ok(resp.kvs().iter().map(Entry::from).collect())
}

/// Step 5: read a key as it was at an older store revision. etcd keeps old versions until they are
/// compacted, which is what makes watch-from-revision and consistent snapshots possible.
pub async fn get_at_revision(
    client: &mut Client,
    key: &str,
    revision: i64,
) -> Result<Option<Entry>> {
    let resp = client
        .get(key, Some(GetOptions::new().with_revision(revision)))
        .await
        .with_context(|| format!("get {key} at revision {revision}"))?;
    Ok(resp.kvs().first().map(Entry::from))
}

/// Step 6: delete every key under a prefix and get back what was deleted, again in one round trip.
/// Returns the store revision of the delete and the deleted entries.
pub async fn delete_prefix(client: &mut Client, prefix: &str) -> Result<(i64, Vec<Entry>)> {
    let options = DeleteOptions::new().with_prefix().with_prev_key();
    let resp = client
        .delete(prefix, Some(options))
        .await
        .with_context(|| format!("delete prefix {prefix}"))?;
    let deleted = resp.prev_kvs().iter().map(Entry::from).collect();
    Ok((revision_of(resp.header()), deleted))
}
