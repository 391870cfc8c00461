//! The default run, `cargo run -p bench`: 2,000 PUTs four ways, side by side (see main.rs).

use std::time::Duration;

use anyhow::Result;
use etcd_client::Client;
use recipes::shutdown::Shutdown;

use crate::drive::{drive_puts, drive_txns, stopping, unless_stopped};
use crate::keys::Keys;

/// Puts per way in the default run: enough to see the difference, short enough for a workshop.
const DEFAULT_TOTAL: u64 = 2_000;
const DEFAULT_VALUE: usize = 256;
/// The connections it opens, for way 3.
pub(crate) const CONNECTIONS: u32 = 8;

/// The four ways over `conns` (`CONNECTIONS` of them), unless a signal comes first: then the requests in
/// flight finish (up to `limit`) before the clean-up.
pub(crate) async fn four_ways(
    conns: &[Client],
    prefix: &str,
    shutdown: &mut Shutdown,
    limit: Duration,
) -> Result<()> {
    let keys = Keys::new(prefix, 8, DEFAULT_TOTAL, true)?;
    let value = vec![b'v'; DEFAULT_VALUE];
    println!(
        "writing {DEFAULT_TOTAL} puts of {DEFAULT_VALUE}-byte values under {prefix}, four ways:"
    );
    let work = one_after_another(conns, &keys, &value);
    unless_stopped(work, shutdown, limit)
        .await
        .unwrap_or(Ok(()))
}

/// The four ways, one after another, each printing its rate; they stop early on a signal.
async fn one_after_another(conns: &[Client], keys: &Keys, value: &[u8]) -> Result<()> {
    let one = &conns[..1];
    // 1. One request at a time: each waits a round trip plus etcd's disk sync.
    let s = drive_puts(one, 1, DEFAULT_TOTAL, keys, value).await?;
    if stopping() {
        return Ok(());
    }
    println!(
        "1. sequential, one request at a time: {:.0} put/s (p99 {:.1?})",
        s.requests_per_sec(),
        s.percentile(99.0)
    );
    // 2. 64 at a time over one connection: HTTP/2 streams, and etcd batches their commits.
    let s = drive_puts(one, 64, DEFAULT_TOTAL, keys, value).await?;
    if stopping() {
        return Ok(());
    }
    println!(
        "2. 64 requests in flight over one client (one HTTP/2 connection): {:.0} put/s (p99 {:.1?})",
        s.requests_per_sec(),
        s.percentile(99.0)
    );
    // 3. 64 at a time over the 8 connections (`CONNECTIONS`).
    let s = drive_puts(conns, 64, DEFAULT_TOTAL, keys, value).await?;
    if stopping() {
        return Ok(());
    }
    println!(
        "3. 64 requests in flight over 8 clients (8 connections): {:.0} put/s (p99 {:.1?})",
        s.requests_per_sec(),
        s.percentile(99.0)
    );
    // 4. 64 PUTs in each transaction, one transaction at a time.
    let s = drive_txns(one, 1, DEFAULT_TOTAL, 64, keys, value).await?;
    if stopping() {
        return Ok(());
    }
    println!(
        "4. 64 puts per transaction, one transaction at a time: {:.0} put/s ({} transactions, p99 {:.1?})",
        DEFAULT_TOTAL as f64 / s.total.as_secs_f64(),
        s.count(),
        s.percentile(99.0)
    );
    Ok(())
}
