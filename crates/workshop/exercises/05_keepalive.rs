//! Exercise 5: a keep-alive that stops on Ctrl-C and revokes. The lesson: crates/keepalive/src/main.rs,
//! step 3, and `renew_when_due` in crates/recipes/src/kept_lease.rs (one renewal: send, then read).
//!
//! Grant a lease of 3 seconds, put `alive = yes` on it, and renew it every second until Ctrl-C; then
//! revoke it, so that etcd deletes the key at once. Rust's keep-alive sends nothing unless you send it.

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

use etcd_client::{Client, ConnectOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions};

const KEY: &str = "/workshop/05/alive";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let mut client = Client::connect(workshop::endpoints(), Some(options)).await?;

    // Go: resp, err := cli.Grant(ctx, 3); cli.Put(ctx, key, "yes", clientv3.WithLease(resp.ID))
    let lease = client.lease_grant(3, None).await?;
    let on_lease = PutOptions::new().with_lease(lease.id());
    client.put(KEY, "yes", Some(on_lease)).await?;
    println!(
        "put {KEY} on lease {:016x} (ttl {}s)",
        lease.id(),
        lease.ttl()
    );

    // Go: ch, err := cli.KeepAlive(ctx, resp.ID). In Rust: a keeper to send on, a stream to read from.
    let (mut keeper, mut answers): (LeaseKeeper, LeaseKeepAliveStream) =
        todo!("open the keep-alive stream of the lease");
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                todo!("each tick: keeper.keep_alive().await?, then answers.message().await?, then print `renewed: ttl <n>s`");
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    // Go: cli.Revoke(ctx, resp.ID), with a deadline so that stopping never hangs.
    todo!("revoke the lease, bounded by tokio::time::timeout of 5 s");
    println!("revoked lease {:016x}", lease.id());
    Ok(())
}
