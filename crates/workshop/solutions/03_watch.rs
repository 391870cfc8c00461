//! Exercise 3: a watch that prints each event. The lesson: crates/watch/src/main.rs, steps 2 and 3.
//!
//! Watch every key under the workshop's prefix and print each change as `PUT <key> = <value>` or
//! `DELETE <key>`. Stop after three changes. The checker makes them once you print `watching`.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, WatchOptions};

const PREFIX: &str = "/workshop/03/";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let client = Client::connect(workshop::endpoints(), Some(options)).await?;

    // Go: rch := cli.Watch(ctx, prefix, clientv3.WithPrefix())
    let mut stream = client
        .watch_client()
        .watch(PREFIX, Some(WatchOptions::new().with_prefix()))
        .await?;
    // The watch exists once etcd confirms it: the first message on the stream says `created`.
    let created = stream.message().await?;
    anyhow::ensure!(
        created.is_some_and(|r| r.created()),
        "etcd did not confirm the watch"
    );
    println!("watching {PREFIX}");

    // Go: for wresp := range rch { for _, ev := range wresp.Events { ... } }
    let mut seen = 0;
    while seen < 3 {
        let Some(resp) = stream.message().await? else {
            anyhow::bail!("the watch stream ended");
        };
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => println!("PUT {} = {}", kv.key_str()?, kv.value_str()?),
                EventType::Delete => println!("DELETE {}", kv.key_str()?),
            }
            seen += 1;
        }
    }
    Ok(())
}
