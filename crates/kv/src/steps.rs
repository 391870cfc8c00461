//! What `main.rs` needs around its steps: the checks that keep the demo from touching keys it did not
//! write, step 6's clean-up, and two small helpers for printing replies.

use std::borrow::Cow;

use anyhow::{bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, ResponseHeader, Txn, TxnOp,
    TxnOpResponse,
};

/// --key stays in place after the run, and the demo prefix must be empty before it and is emptied after
/// it: a key inside the prefix cannot be both. Checked before connecting.
pub fn key_outside_prefix(key: &str, prefix: &str) -> Result<()> {
    if key.starts_with(prefix) {
        bail!(
            "--key {key} is inside --demo-prefix {prefix}, which steps 3 to 6 use as scratch space and \
             empty again; choose a --key outside {prefix}, or another --demo-prefix"
        );
    }
    Ok(())
}

/// Refuses a demo prefix that holds keys: step 6 must only ever delete what this run wrote. Called before
/// the first write, so that a refused run leaves etcd as it found it. `with_keys_only` and `with_limit`
/// keep the check cheap on a busy prefix.
pub async fn demo_prefix_is_empty(client: &mut Client, prefix: &str) -> Result<()> {
    let a_few_keys = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_limit(3);
    let existing = client
        .get(prefix, Some(a_few_keys))
        .await
        .with_context(|| format!("check that {prefix} is empty"))?;
    if existing.count() > 0 {
        let keys: Vec<_> = existing.kvs().iter().map(|kv| text(kv.key())).collect();
        bail!(
            "{prefix} already holds {} key(s) ({}{}), which this program did not write; choose an empty \
             --demo-prefix (or, if they are left from an interrupted run, `etcdctl del --prefix {prefix}`)",
            existing.count(),
            keys.join(", "),
            if existing.count() > keys.len() as i64 { ", ..." } else { "" }
        );
    }
    Ok(())
}

/// 6. Clean up, deleting only what this run created: one transaction whose guards check that each key
///    still has the create revision we gave it. A key another client deleted and wrote again has a new
///    create revision, so the guard fails and nothing is deleted. (A plain `delete(prefix, with_prefix())`
///    would also take any key someone else put under the prefix.) `--key` stays for you to inspect.
pub async fn delete_what_this_run_created(
    client: &mut Client,
    prefix: &str,
    created: &[(String, i64)],
) -> Result<()> {
    let guards = created
        .iter()
        .map(|(key, rev)| Compare::create_revision(key.as_str(), CompareOp::Equal, *rev));
    let with_prev = || Some(DeleteOptions::new().with_prev_key());
    let deletes = created
        .iter()
        .map(|(key, _)| TxnOp::delete(key.as_str(), with_prev()));
    // Go: cli.Txn(ctx).If(Compare(CreateRevision(k), "=", rev), ...).Then(OpDelete(k), ...).Commit()
    let txn = Txn::new()
        .when(guards.collect::<Vec<_>>())
        .and_then(deletes.collect::<Vec<_>>());
    let cleanup = client
        .txn(txn)
        .await
        .with_context(|| format!("delete the demo keys under {prefix}"))?;
    if !cleanup.succeeded() {
        bail!(
            "left the demo keys under {prefix} in place: another client re-created one of them after this \
             run wrote it (see `etcdctl get --prefix {prefix}`)"
        );
    }
    let mut deleted: Vec<_> = cleanup
        .op_responses()
        .iter()
        .filter_map(|op| match op {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().map(|kv| text(kv.key()).into_owned()),
            _ => None,
        })
        .collect();
    deleted.sort();
    println!(
        "6. deleted the {} keys this run created under {prefix}, in one transaction at revision {}: {}",
        deleted.len(),
        revision(cleanup.header()),
        deleted.join(", ")
    );
    Ok(())
}

/// The store revision a reply was served at (every reply's header carries it).
pub fn revision(header: Option<&ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

/// Keys and values are bytes: shown as text, with any invalid UTF-8 replaced.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The value of the first key-value of a reply, or `(absent)` when there is none.
pub fn value_of(kvs: &[KeyValue]) -> Cow<'_, str> {
    kvs.first().map_or("(absent)".into(), |kv| text(kv.value()))
}
