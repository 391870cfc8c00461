//! `bench lease-keepalive`: `--total` renewals of one lease per client over keep-alive streams, as
//! etcd's `benchmark lease-keepalive` does; the leases are revoked at the end, also on Ctrl-C.
//!
//! `cargo run --release -p bench -- lease-keepalive --clients 16 --total 20000`

use std::time::Instant;

use anyhow::{bail, Context, Result};
use etcd_client::Client;
use recipes::shutdown::Shutdown;

use crate::cli;
use crate::drive::drive;
use crate::report::measure;

/// TTL of the leases `lease-keepalive` renews: long enough never to expire during a run.
const BENCH_LEASE_TTL: i64 = 60;

/// Renews `--clients` leases; each lease it grants goes into `leases`, which main.rs revokes at the end.
pub(crate) async fn lease_keepalive(
    a: cli::LeaseArgs,
    conns: &[Client],
    leases: &mut Vec<i64>,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let load = &a.load;
    // One lease per client, as etcd's tool does; granted before the clock starts, revoked at the end
    // (also on Ctrl-C or after an error), so the run leaves no lease behind.
    for i in 0..load.clients as usize {
        let mut client = conns[i % conns.len()].clone();
        // Go: cli.Grant(ctx, ttl)
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
        conns,
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
    measure(work, shutdown, "renewals", load.connect.dial_timeout).await
}
