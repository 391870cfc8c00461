//! Exercise 3: a watch that prints each event. The lesson: crates/watch/src/main.rs, steps 2 and 3.
//!
//! Watch every key under the workshop's prefix and print each change as `PUT <key> = <value>` or
//! `DELETE <key>`. Stop after three changes. The checker makes them once you print `watching`.

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

use etcd_client::{Client, ConnectOptions, EventType, WatchOptions, WatchResponse, WatchStream};

const PREFIX: &str = "/workshop/03/";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let client = Client::connect(workshop::endpoints(), Some(options)).await?;

    // Go: rch := cli.Watch(ctx, prefix, clientv3.WithPrefix())
    let mut stream: WatchStream =
        todo!("open a prefix watch on PREFIX: client.watch_client().watch(..) with WatchOptions");
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
        let resp: WatchResponse =
            todo!("read the next message from the stream (it ends with None)");
        for event in resp.events() {
            todo!("print `PUT <key> = <value>` or `DELETE <key>`, by event.event_type()");
            seen += 1;
        }
    }
    Ok(())
}
