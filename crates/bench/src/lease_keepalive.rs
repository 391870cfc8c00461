//! `bench lease-keepalive`: `--total` renewals of one lease per client over keep-alive streams, as
//! etcd's `benchmark lease-keepalive` does; the leases are revoked at the end, also on Ctrl-C.
//!
//! `cargo run --release -p bench -- lease-keepalive --clients 16 --total 20000`

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::Client;

use crate::shared::{measure_or_stop, setup};
use crate::{cli, drive};

/// TTL of the leases `lease-keepalive` renews: long enough never to expire during a run.
const BENCH_LEASE_TTL: i64 = 60;

pub(crate) async fn lease_keepalive(
    a: cli::LeaseArgs,
    shutdown: &mut recipes::shutdown::Shutdown,
) -> Result<()> {
    let load = &a.load;
    let Some(conns) = setup(load, shutdown).await? else {
        return Ok(());
    };
    // One lease per client, as etcd's tool does; granted before the clock starts, revoked at the end
    // (also on Ctrl-C), so the run leaves no lease behind.
    let mut leases = Vec::with_capacity(load.clients as usize);
    for i in 0..load.clients as usize {
        let mut client = conns[i % conns.len()].clone();
        let granted = client
            .lease_grant(BENCH_LEASE_TTL, None)
            .await
            .context("grant a lease")?;
        leases.push(granted.id());
    }
    println!(
        "bench lease-keepalive: {} renewals of {} lease(s), {} client(s) over {} connection(s)",
        a.total,
        leases.len(),
        load.clients,
        load.conns
    );
    let ids = leases.clone();
    let work = drive(
        &conns,
        load.clients,
        a.total,
        move |worker, mut client, mut next| {
            let id = ids[worker];
            async move {
                // `lease_keep_alive` opens ONE bidirectional stream; each renewal is then a message out and a
                // message back on it. (Go's tool calls `KeepAliveOnce`, which opens a stream per renewal.)
                let (mut keeper, mut replies) = client.lease_keep_alive(id).await?;
                let mut latencies = Vec::with_capacity(next.share());
                while next.claim() {
                    let started = Instant::now();
                    keeper.keep_alive().await?;
                    match replies.message().await? {
                        Some(reply) if reply.ttl() > 0 => {}
                        _ => bail!("lease {id:x} is gone: etcd answered the renewal with TTL 0"),
                    }
                    latencies.push(started.elapsed());
                }
                Ok(latencies)
            }
        },
    );
    let outcome = measure_or_stop(work, shutdown, "renewals", load.connect.dial_timeout).await;
    let mut client = conns[0].clone();
    let revoked = revoke(&mut client, &leases, load.connect.dial_timeout).await?;
    outcome?;
    println!("revoked the {revoked} lease(s) it granted");
    Ok(())
}

/// Revokes `leases`, each within `limit`; returns how many were revoked.
async fn revoke(client: &mut Client, leases: &[i64], limit: Duration) -> Result<usize> {
    for &id in leases {
        tokio::time::timeout(limit, client.lease_revoke(id))
            .await
            .with_context(|| format!("revoke lease {id:x}: no answer within {limit:?}"))?
            .with_context(|| format!("revoke lease {id:x}"))?;
    }
    Ok(leases.len())
}
