//! Reporting a subcommand's run: etcd's summary lines, or, on Ctrl-C or SIGTERM, a stop that lets the
//! requests in flight finish first.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use bench::Summary;
use recipes::shutdown::Shutdown;

use crate::drive::unless_stopped;

/// Runs the measured `work` unless a signal comes first, then prints etcd's summary lines and one line of
/// percentiles of `what` ("puts", "reads"). On a signal it stops the workers and waits for the requests
/// in flight (up to `limit`), so that the clean-up comes after the last of them.
pub(crate) async fn measure(
    work: impl Future<Output = Result<Summary>>,
    shutdown: &mut Shutdown,
    what: &str,
    limit: Duration,
) -> Result<()> {
    let Some(summary) = unless_stopped(work, shutdown, limit).await else {
        return Ok(());
    };
    let summary = summary?;
    print!("{}", summary.render());
    println!(
        "\n{} {what}: p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, p99.9 {:.1?}, slowest {:.1?}",
        summary.count(),
        summary.percentile(50.0),
        summary.percentile(90.0),
        summary.percentile(99.0),
        summary.percentile(99.9),
        summary.slowest()
    );
    Ok(())
}
