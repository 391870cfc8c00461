//! `bench range`: `--total` reads of one key, linearizable (`--consistency l`, the default) or
//! serializable (`s`), as etcd's `benchmark range` does.
//!
//! `cargo run --release -p bench -- range /bench/k --consistency s --clients 16 --total 20000`

use std::time::Instant;

use anyhow::Result;
use etcd_client::{Client, GetOptions};
use recipes::shutdown::Shutdown;

use crate::cli;
use crate::drive::drive;
use crate::report::measure;

pub(crate) async fn range(
    a: cli::RangeArgs,
    conns: &[Client],
    shutdown: &mut Shutdown,
) -> Result<()> {
    let load = &a.load;
    let serializable = a.consistency == "s";
    println!(
        "bench range: {} {} reads of {}, {} client(s) over {} connection(s)",
        a.total,
        if serializable {
            "serializable"
        } else {
            "linearizable"
        },
        a.key,
        load.clients,
        load.conns
    );
    let key = a.key.into_bytes();
    let work = drive(conns, load.clients, a.total, |_, mut client, mut next| {
        let key = key.clone();
        async move {
            // `--consistency l` (the default) is linearizable: the member asks the leader for its commit
            // index and waits to catch up, a round of messages per read (batched under load).
            // `s` is serializable: the member answers from its own copy at once, which may be slightly
            // stale on a follower. On a one-member cluster both see the same data; only the cost differs.
            let options = serializable.then(|| GetOptions::new().with_serializable());
            let mut latencies = Vec::with_capacity(next.share());
            while next.claim() {
                let started = Instant::now();
                // Go: cli.Get(ctx, key), plus clientv3.WithSerializable() for `s`
                client.get(key.clone(), options.clone()).await?;
                latencies.push(started.elapsed());
            }
            Ok(latencies)
        }
    });
    measure(work, shutdown, "reads", load.connect.dial_timeout).await
}
