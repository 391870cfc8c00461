//! `bench put`: `--total` PUTs of `--val-size`-byte values over `--key-space-size` keys, from `--clients`
//! workers over `--conns` connections, as etcd's `benchmark put` does.
//!
//! `cargo run --release -p bench -- put --clients 64 --conns 1 --total 20000 --val-size 256`

use anyhow::Result;
use etcd_client::Client;
use recipes::shutdown::Shutdown;

use crate::cli;
use crate::drive::drive_puts;
use crate::keys::Keys;
use crate::report::measure;

/// The keys it writes, or why --key-size cannot hold --key-space-size of them (checked before connecting).
pub(crate) fn keys(a: &cli::PutArgs) -> Result<Keys> {
    Keys::new(
        &a.load.prefix,
        a.key_size,
        a.key_space_size,
        a.sequential_keys,
    )
}

pub(crate) async fn put(
    a: cli::PutArgs,
    keys: Keys,
    conns: &[Client],
    shutdown: &mut Shutdown,
) -> Result<()> {
    let load = &a.load;
    println!(
        "bench put: {} puts, {}-byte values, {} key(s) under {}, {} client(s) over {} connection(s)",
        a.total, a.val_size, a.key_space_size, load.prefix, load.clients, load.conns
    );
    // Allocation per request: the value is built once; each request gets a copy, because `put` takes
    // its arguments by value (`impl Into<Vec<u8>>`) to move them into the protobuf message.
    let value = vec![b'v'; a.val_size as usize];
    let work = drive_puts(conns, load.clients, a.total, &keys, &value);
    measure(work, shutdown, "puts", load.connect.dial_timeout).await
}
