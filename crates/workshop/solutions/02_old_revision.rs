//! Exercise 2: a prefix read at an old revision. The lesson: crates/kv/src/main.rs, steps 4 and 5.
//!
//! Write `color = red`, then `color = blue`, under the workshop's prefix. Then read every key under the
//! prefix twice: as it is now, and as it was at the revision of the first write.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};

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
    let now = client
        .get(PREFIX, Some(GetOptions::new().with_prefix()))
        .await?;
    for kv in now.kvs() {
        println!("now: {} = {}", kv.key_str()?, kv.value_str()?);
    }

    // Go: resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(redRevision))
    let options = GetOptions::new().with_prefix().with_revision(red_revision);
    let then = client.get(PREFIX, Some(options)).await?;
    for kv in then.kvs() {
        println!(
            "at revision {red_revision}: {} = {}",
            kv.key_str()?,
            kv.value_str()?
        );
    }
    Ok(())
}
