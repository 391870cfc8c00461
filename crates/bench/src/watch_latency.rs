//! `bench watch-latency`: `--put-total` puts to one key, each timed from sending the put until its watch
//! event arrives, as etcd's `benchmark watch-latency` does.
//!
//! `cargo run --release -p bench -- watch-latency --put-total 2000`

use std::time::Instant;

use anyhow::{Context, Result};
use bench::Summary;
use etcd_client::Client;
use recipes::shutdown::Shutdown;

use crate::cli;
use crate::drive::{progress_bar, stopping};
use crate::report::measure;

pub(crate) async fn watch_latency(
    a: cli::WatchArgs,
    conns: &[Client],
    shutdown: &mut Shutdown,
) -> Result<()> {
    let load = &a.load;
    let client = conns[0].clone();
    let key = format!("{}watch-latency", load.prefix);
    println!(
        "bench watch-latency: {} puts to {key}, each timed until its watch event arrives",
        a.put_total
    );
    let value = vec![b'v'; a.val_size as usize];
    // The watch is opened first and confirmed ("created") before the clock starts.
    // Go: cli.Watch(ctx, key)
    let mut stream = client
        .watch_client()
        .max_decoding_message_size(recipes::resuming_watch::MAX_RESPONSE)
        .watch(key.as_str(), None)
        .await
        .with_context(|| format!("watch {key}"))?;
    stream
        .message()
        .await
        .context("wait for the watch to start")?;
    let total = a.put_total;
    let work = async {
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(total as usize);
        let bar = progress_bar(total);
        for _ in 0..total {
            if stopping() {
                break;
            }
            let sent = Instant::now();
            // The put and the wait for its event run together: the event can arrive before the put's
            // own reply. Latency is from sending the put to receiving the event with its revision.
            let mut put_client = client.clone();
            let (put, first) =
                tokio::join!(put_client.put(key.as_str(), value.clone(), None), async {
                    (stream.message().await, Instant::now())
                });
            let revision = put?.header().map_or(0, |h| h.revision());
            let (mut message, mut seen) = first;
            loop {
                let response = message?.context("the watch stream ended")?;
                if response
                    .events()
                    .iter()
                    .any(|e| e.kv().is_some_and(|kv| kv.mod_revision() == revision))
                {
                    break;
                }
                message = stream.message().await;
                seen = Instant::now();
            }
            latencies.push(seen - sent);
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok(Summary::new(latencies, started.elapsed()))
    };
    measure(work, shutdown, "watch events", load.connect.dial_timeout).await
}
