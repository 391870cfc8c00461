//! The reusable part of the `kv` topic: reading a large prefix in pages, at one consistent revision.
//!
//! Every other call of the topic is one `etcd-client` call, and `src/main.rs` makes it where it explains
//! it. This file depends only on `etcd-client` and `anyhow`, so it can be copied into a service as is
//! (see the topic README, "Use it in your project").

use anyhow::{Context, Result};
use etcd_client::{Client, GetOptions, KeyValue};

/// Every key under `prefix`, in key order, read `page_size` keys per request, all as of one store revision.
///
/// Use it instead of one `get(prefix, with_prefix())` when a prefix may hold many keys or large values:
/// one reply must fit the client's message size limit (4 MiB in etcd-client), and one huge range read also
/// makes etcd build that whole reply in memory while other clients wait. Paging keeps each reply small.
///
/// The first page fixes the revision, and every later page is read *at that revision*, so the result is
/// a snapshot: a key written or deleted while we page is not half-seen. Returns that revision with the keys;
/// a watch from `revision + 1` then continues exactly where the snapshot ends. Paging fails if etcd
/// compacts that revision away in the middle (the reply says "required revision has been compacted").
pub async fn get_prefix_in_pages(
    client: &mut Client,
    prefix: &str,
    page_size: i64,
) -> Result<(i64, Vec<KeyValue>)> {
    let page_size = page_size.max(1);
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0; // 0 means "now" for the first page; later pages use the revision it returns
    let mut all = Vec::new();
    loop {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(page_size);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let resp = client
            .get(from.clone(), Some(options))
            .await
            .with_context(|| {
                format!(
                    "read keys under {prefix} (page {})",
                    all.len() as i64 / page_size + 1
                )
            })?;
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        let more = resp.more();
        let page = resp.kvs().to_vec();
        let Some(last) = page.last() else { break };
        // The next page starts right after the last key: the same bytes with a zero byte appended.
        from = last.key().to_vec();
        from.push(0);
        all.extend(page);
        if !more {
            break;
        }
    }
    Ok((revision, all))
}

/// The first key after every key that starts with `prefix`: its last byte that is not 0xff, plus one.
/// This is what `with_prefix()` computes; paging needs it by hand because each page starts elsewhere.
/// An empty prefix (or one of only 0xff bytes) means "to the end of the keyspace", written `\0`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"/kv-demo/"), b"/kv-demo0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
