//! What a run leaves in etcd, and removing it: the run claims an empty `--prefix` at the start, and at the
//! end deletes the keys under it or revokes the leases it granted, also after an error or a signal.

use anyhow::{bail, Context, Result};
use etcd_client::{Client, DeleteOptions, GetOptions};
use recipes::shutdown::ExitBudget;

/// Refuses a prefix that already holds keys: the run deletes its whole prefix at the end, which is only
/// safe because it was empty at the start.
pub(crate) async fn claim_prefix(client: &mut Client, prefix: &str) -> Result<()> {
    let existing = client
        .get(
            prefix,
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(1),
            ),
        )
        .await
        .with_context(|| format!("check that {prefix} is empty"))?;
    if let Some(kv) = existing.kvs().first() {
        bail!(
            "{prefix} already holds {} key(s) (first: {}), which this run did not write; choose an empty \
             --prefix (or, if they are left from an interrupted run, `etcdctl del --prefix {prefix}`)",
            existing.count(),
            String::from_utf8_lossy(kv.key())
        );
    }
    Ok(())
}

/// What a run leaves behind, to remove when it ends.
#[derive(Debug, Default)]
pub(crate) struct Litter {
    /// The claimed prefix, deleted whole at the end (by every run but `lease-keepalive`, which writes no
    /// keys).
    pub(crate) keys_under: Option<String>,
    /// The leases the run granted (`lease-keepalive`), revoked at the end.
    pub(crate) leases: Vec<i64>,
}

impl Litter {
    /// Removes it all, the calls sharing `budget` (--dial-timeout), and says what went, one line each.
    ///
    /// A prefix delete is acceptable here, and only here, because `claim_prefix` refused a non-empty
    /// prefix at the start: every key under it was written by this run. (Another client writing under
    /// /bench/ during the run would lose its keys too; that is why the prefix is a flag.)
    pub(crate) async fn clean_up(
        self,
        client: &mut Client,
        mut budget: ExitBudget,
    ) -> Result<Vec<String>> {
        let mut done = Vec::new();
        if let Some(prefix) = self.keys_under {
            let what = format!("delete the keys under {prefix}");
            let options = DeleteOptions::new().with_prefix();
            let deleted = budget
                .call(what, client.delete(prefix.as_str(), Some(options)))
                .await?;
            done.push(format!(
                "deleted the {} keys written under {prefix}",
                deleted.deleted()
            ));
        }
        if !self.leases.is_empty() {
            for &id in &self.leases {
                budget
                    .call(format!("revoke lease {id:x}"), client.lease_revoke(id))
                    .await?;
            }
            done.push(format!(
                "revoked the {} lease(s) it granted",
                self.leases.len()
            ));
        }
        Ok(done)
    }
}
