//! Setup, reporting and cleanup, shared by the subcommands.

use std::time::Duration;

use anyhow::{bail, Result};
use bench::Summary;
use etcd_client::Client;

use crate::cli::Load;
use crate::{claim_prefix, connect_or_stop, delete_prefix, stop_and_drain};

/// Connects (K connections), checks the flags against each other, and claims the prefix.
/// `None` when a signal arrived first.
pub(crate) async fn setup(
    load: &Load,
    shutdown: &mut recipes::shutdown::Shutdown,
) -> Result<Option<Vec<Client>>> {
    if load.conns > load.clients {
        bail!(
            "--conns {} is more than --clients {}: each connection needs at least one client to use it",
            load.conns,
            load.clients
        );
    }
    let Some(conns) = connect_or_stop(&load.connect, load.conns, shutdown).await? else {
        return Ok(None);
    };
    let mut client = conns[0].clone();
    claim_prefix(&mut client, &load.prefix).await?;
    Ok(Some(conns))
}

/// Runs the measured work unless a signal comes first, then prints etcd's summary lines.
pub(crate) async fn measure_or_stop(
    work: impl std::future::Future<Output = Result<Summary>>,
    shutdown: &mut recipes::shutdown::Shutdown,
    what: &str,
    limit: Duration,
) -> Result<()> {
    tokio::pin!(work);
    let summary = tokio::select! {
        summary = &mut work => summary?,
        signal = shutdown.recv() => {
            println!("{signal}: stopping and cleaning up");
            stop_and_drain(work, limit).await;
            return Ok(());
        }
    };
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

/// Measures, then deletes the prefix (also after an error or a signal).
pub(crate) async fn finish(
    load: &Load,
    conns: &[Client],
    work: impl std::future::Future<Output = Result<Summary>>,
    shutdown: &mut recipes::shutdown::Shutdown,
    what: &str,
) -> Result<()> {
    let outcome = measure_or_stop(work, shutdown, what, load.connect.dial_timeout).await;
    let mut client = conns[0].clone();
    let deleted = delete_prefix(&mut client, &load.prefix, load.connect.dial_timeout).await?;
    outcome?;
    println!("deleted the {deleted} keys written under {}", load.prefix);
    Ok(())
}
