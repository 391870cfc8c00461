//! More connections beside the first: what `--conns K` asks for.
//!
//! One `Client` is one HTTP/2 connection (a tonic `Channel`), and its clones share it: `Client::clone()`
//! would NOT open a connection. K connections are K separate `Client::connect`s, so K TCP connections,
//! K HTTP/2 flow-control windows and K server-side reader goroutines. HTTP/2 window sizes are tonic
//! settings that etcd-client 0.21's `ConnectOptions` does not expose; what it does expose (keep-alive
//! pings, timeouts) `etcd_connect::connect` sets.

use anyhow::{Context, Result};
use etcd_client::Client;
use etcd_connect::ConnectArgs;
use tokio::task::JoinSet;

/// `first` and `count - 1` more connections to the same endpoints, opened at the same time (each
/// through `etcd_connect::connect`, which also proves etcd answers).
pub(crate) async fn with_more(
    first: Client,
    connect: &ConnectArgs,
    count: u32,
) -> Result<Vec<Client>> {
    let mut tasks = JoinSet::new();
    for _ in 1..count {
        let connect = connect.clone();
        tasks.spawn(async move { etcd_connect::connect(&connect).await });
    }
    let mut conns = Vec::with_capacity(count as usize);
    conns.push(first);
    while let Some(joined) = tasks.join_next().await {
        conns.push(joined.context("a connection attempt stopped")??);
    }
    Ok(conns)
}
