//! Exercise 2: a prefix read at an old revision. The lesson: crates/kv/src/main.rs, steps 4 and 5.
//!
//! Write `color = red`, then `color = blue`, under the workshop's prefix. Then read every key under the
//! prefix twice: as it is now, and as it was at the revision of the first write.

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

use etcd_client::{Client, ConnectOptions, GetOptions, GetResponse};

const PREFIX: &str = "/workshop/02/";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let mut client = Client::connect(workshop::endpoints(), Some(options)).await?;

    let key = format!("{PREFIX}color");
    let red = client.put(key.as_str(), "red", None).await?;
    let red_revision = red.header().map_or(0, |h| h.revision());
    client.put(key.as_str(), "blue", None).await?;
    println!("put {key} = red at revision {red_revision}, then blue");

    // Go: resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
    let now: GetResponse = todo!("read every key under PREFIX: client.get with GetOptions");
    for kv in now.kvs() {
        println!("now: {} = {}", kv.key_str()?, kv.value_str()?);
    }

    // Go: resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(redRevision))
    let then: GetResponse = todo!("the same read, as the store was at red_revision");
    for kv in then.kvs() {
        println!(
            "at revision {red_revision}: {} = {}",
            kv.key_str()?,
            kv.value_str()?
        );
    }
    Ok(())
}
