//! `bench txn-put`: `--total` PUTs, `--txn-ops` of them per transaction, as etcd's `benchmark txn-put`
//! does; a transaction over etcd's request limit is refused before connecting.
//!
//! `cargo run --release -p bench -- txn-put --txn-ops 64 --total 20000`

use anyhow::{bail, Result};
use etcd_client::Client;
use recipes::shutdown::Shutdown;

use crate::cli;
use crate::drive::drive_txns;
use crate::keys::Keys;
use crate::report::measure;

/// The keys it writes, or why the flags do not fit etcd (checked before connecting).
pub(crate) fn check(a: &cli::TxnPutArgs) -> Result<Keys> {
    let load = &a.load;
    // Keys 0..total: a transaction may not write one key twice, so every key is distinct.
    let keys = Keys::new(&load.prefix, a.key_size, a.total, true)?;
    // etcd refuses a request over its --max-request-bytes (in gRPC's words, "received message larger than
    // max"), whatever --max-txn-ops allows: check the largest transaction before connecting.
    let ops = u64::from(a.txn_ops).min(a.total);
    let key_bytes = (load.prefix.len() + a.key_size as usize) as u64;
    let bytes = txn_request_bytes(ops, key_bytes, u64::from(a.val_size));
    if bytes > a.max_request_bytes {
        bail!(
            "one transaction of {ops} puts of {key_bytes}-byte keys and {}-byte values is {bytes} bytes, \
             over the {} bytes etcd accepts in one request (its --max-request-bytes, 1.5 MiB by default): \
             lower --txn-ops or --val-size (or, for an etcd started with a higher limit, pass that as \
             --max-request-bytes)",
            a.val_size,
            a.max_request_bytes
        );
    }
    Ok(keys)
}

pub(crate) async fn txn_put(
    a: cli::TxnPutArgs,
    keys: Keys,
    conns: &[Client],
    shutdown: &mut Shutdown,
) -> Result<()> {
    let load = &a.load;
    let txns = a.total.div_ceil(u64::from(a.txn_ops));
    println!(
        "bench txn-put: {} puts in {txns} transactions of up to {} puts, {} client(s) over {} connection(s)",
        a.total, a.txn_ops, load.clients, load.conns
    );
    let value = vec![b'v'; a.val_size as usize];
    let work = drive_txns(conns, load.clients, a.total, a.txn_ops, &keys, &value);
    measure(work, shutdown, "transactions", load.connect.dial_timeout).await
}

/// The encoded size of a transaction of `ops` PUTs with `key`-byte keys and `value`-byte values: what etcd
/// measures against --max-request-bytes. In protobuf, a `bytes` or message field costs a one-byte tag, its
/// length as a varint, then its content; each PUT is a `PutRequest` (key, value) inside a `RequestOp`
/// inside the `TxnRequest`'s `success` list, and an empty value is left out.
fn txn_request_bytes(ops: u64, key: u64, value: u64) -> u64 {
    fn field(len: u64) -> u64 {
        // A varint holds 7 bits per byte.
        let bits = 64 - u64::from((len | 1).leading_zeros());
        1 + bits.div_ceil(7) + len
    }
    let put = field(key) + if value > 0 { field(value) } else { 0 };
    ops * field(field(put))
}
