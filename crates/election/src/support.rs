//! What the demo in `main.rs` does around its steps, which is not the lesson: it checks that nobody else
//! stands in the election, waits (with a deadline) for a candidate's key to be queued or for a campaign
//! running in a task to return, and reads back what is left at the end.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{CampaignResponse, Client, GetOptions, LeaderKey, SortOrder, SortTarget};
use log::debug;
use recipes::shutdown::ExitBudget;
use tokio::task::JoinHandle;

/// How long the demo waits for what etcd does at once (queue b, elect b), or within a short TTL (step 8).
pub const DEMO_TIMEOUT: Duration = Duration::from_secs(10);

/// A campaign running in a task of its own: it returns only once its candidate leads.
pub type Waiting = JoinHandle<Result<CampaignResponse, etcd_client::Error>>;

/// The demo shows who wins, so it needs an election nobody else stands in: a candidate from another
/// terminal would lead instead of a. Refuse, and say who is there, rather than compete with it.
pub async fn refuse_a_busy_election(client: &mut Client, name: &str) -> Result<()> {
    let prefix = format!("{name}/");
    let options = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_limit(3);
    let existing = client
        .get(prefix.as_str(), Some(options))
        .await
        .with_context(|| format!("check that nobody stands in {name}"))?;
    if existing.count() == 0 {
        return Ok(());
    }
    let keys: Vec<String> = existing
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    bail!(
        "{prefix} already holds {} candidate key(s) ({}{}): the demo needs an election nobody else \
         stands in, so it stops rather than compete; stop those candidates, or run the demo with \
         --name /another-election",
        existing.count(),
        keys.join(", "),
        if existing.more() { ", ..." } else { "" }
    );
}

/// The leader key a campaign answered with: `who`'s proof of leadership, which proclaim and resign take.
pub fn leader_key(won: &CampaignResponse, who: &str) -> Result<LeaderKey> {
    won.leader()
        .cloned()
        .with_context(|| format!("etcd answered {who}'s campaign without a leader key"))
}

/// Waits up to [`DEMO_TIMEOUT`] for candidate b's campaign, running in a task, to return (`after`: "of a
/// resigning"), and returns b's leader key, checking that it is b's key `key_b`.
pub async fn b_won_within(waiting: Waiting, key_b: &str, after: &str) -> Result<LeaderKey> {
    let won = tokio::time::timeout(DEMO_TIMEOUT, waiting)
        .await
        .with_context(|| format!("b was not elected within {DEMO_TIMEOUT:?} {after}"))?
        .context("candidate b's campaign task failed")?
        .with_context(|| format!("candidate b: campaign with {key_b}"))?;
    let leader = leader_key(&won, "b")?;
    if leader.key() != key_b.as_bytes() {
        bail!(
            "b was elected with the key {} instead of {key_b}",
            text(leader.key())
        );
    }
    Ok(leader)
}

/// One candidate key, as read from etcd.
pub struct Candidate {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
}

/// Waits up to [`DEMO_TIMEOUT`] until `key` is queued under `<name>/`, and returns its create revision
/// and the first candidate (the leader). A blocked campaign gives no sign that it reached etcd; its key
/// appearing does. This reads the queue (sorted by create revision: that order *is* the queue, leader
/// first), and if `key` is not there yet, watches the prefix from the revision right after that read
/// until its PUT arrives. Starting at the read's revision + 1 means no write can slip in between.
pub async fn queued(client: &mut Client, name: &str, key: &str) -> Result<(i64, Candidate)> {
    let prefix = format!("{name}/");
    let sorted = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    let queue = client
        .get(prefix.as_str(), Some(sorted))
        .await
        .with_context(|| format!("list the candidates under {prefix}"))?;
    let Some(first) = queue.kvs().first() else {
        bail!("nobody stands under {prefix} although a leads");
    };
    let first = Candidate {
        key: String::from_utf8_lossy(first.key()).into_owned(),
        value: String::from_utf8_lossy(first.value()).into_owned(),
        create_revision: first.create_revision(),
    };
    if let Some(kv) = queue.kvs().iter().find(|kv| kv.key() == key.as_bytes()) {
        return Ok((kv.create_revision(), first));
    }
    let from = queue.header().map_or(0, |h| h.revision()) + 1;
    debug!("{key} is not queued yet: watching {prefix} from revision {from}");
    let revision = tokio::time::timeout(DEMO_TIMEOUT, put_of(client, &prefix, key, from))
        .await
        .with_context(|| {
            format!("{key} did not appear under {prefix} within {DEMO_TIMEOUT:?}")
        })??;
    Ok((revision, first))
}

/// The create revision of the first PUT of `key` under `prefix` from revision `from` on.
async fn put_of(client: &mut Client, prefix: &str, key: &str, from: i64) -> Result<i64> {
    let kv = recipes::resuming_watch::first_put(client, prefix, key, from).await?;
    Ok(kv.create_revision())
}

/// Reads back what is left under `<name>/` once the demo's `leases` are revoked, and says so: the demo
/// refused to start on a non-empty election, but another candidate may have joined since.
pub async fn say_what_is_left(
    client: &mut Client,
    name: &str,
    leases: &[i64],
    exit: &mut ExitBudget,
) -> Result<()> {
    let prefix = format!("{name}/");
    let count_only = GetOptions::new().with_prefix().with_count_only();
    let left = exit
        .call(
            format!("count the keys under {prefix}"),
            client.get(prefix.as_str(), Some(count_only)),
        )
        .await?;
    let shown: Vec<String> = leases.iter().map(|id| format!("{id:016x}")).collect();
    let shown = shown.join(", ");
    match left.count() {
        0 => println!("done: leases {shown} revoked or expired, nothing is left under {prefix}"),
        n => println!(
            "done: leases {shown} revoked or expired; {n} key(s) of other candidates are under {prefix}"
        ),
    }
    Ok(())
}

/// Bytes from etcd (a key, a value) as text.
pub fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}
