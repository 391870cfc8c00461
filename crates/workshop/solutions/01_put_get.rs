//! Exercise 1: connect, PUT and GET. The lesson: crates/kv/src/main.rs, steps 0 to 2 (0 connects through
//! `etcd_connect::dial`, whose options are in crates/etcd-connect/src/lib.rs, `fn options`).
//!
//! Write `greeting = hello` under the workshop's prefix, read it back, and print what you read.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

const KEY: &str = "/workshop/01/greeting";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let endpoints = workshop::endpoints();

    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let mut client = Client::connect(endpoints, Some(options)).await?;
    println!("connected");

    // Go: _, err = cli.Put(ctx, "/workshop/01/greeting", "hello")
    let put = client.put(KEY, "hello", None).await?;
    let revision = put.header().map_or(0, |h| h.revision());
    println!("put {KEY} = hello at revision {revision}");

    // Go: resp, err := cli.Get(ctx, "/workshop/01/greeting")
    let got = client.get(KEY, None).await?;
    for kv in got.kvs() {
        println!("got {} = {}", kv.key_str()?, kv.value_str()?);
    }
    Ok(())
}
