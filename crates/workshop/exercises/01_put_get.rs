//! Exercise 1: connect, PUT and GET. The lesson: crates/kv/src/main.rs, steps 0 to 2 (0 connects through
//! `etcd_connect::dial`, whose options are in crates/etcd-connect/src/lib.rs, `fn options`).
//!
//! Write `greeting = hello` under the workshop's prefix, read it back, and print what you read.

// The starter: replace each todo!() with the etcd-client calls its comment names. `cargo run -p workshop
// -- check N` says what is still missing; solutions/ has one way to do it.
// Until then, the compiler would warn about the code each todo!() leaves unused.
#![allow(
    unused_variables,
    unused_mut,
    unused_imports,
    unreachable_code,
    dead_code
)]
#![allow(clippy::diverging_sub_expression)]

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetResponse, PutResponse};

const KEY: &str = "/workshop/01/greeting";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let endpoints = workshop::endpoints();

    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
    let mut client: Client = todo!(
            "connect: ConnectOptions::new().with_connect_timeout(..), then Client::connect(endpoints, Some(options))"
        );
    println!("connected");

    // Go: _, err = cli.Put(ctx, "/workshop/01/greeting", "hello")
    let put: PutResponse = todo!("put KEY = hello with client.put");
    let revision = put.header().map_or(0, |h| h.revision());
    println!("put {KEY} = hello at revision {revision}");

    // Go: resp, err := cli.Get(ctx, "/workshop/01/greeting")
    let got: GetResponse = todo!("get KEY back with client.get");
    for kv in got.kvs() {
        println!("got {} = {}", kv.key_str()?, kv.value_str()?);
    }
    Ok(())
}
