//! Exercise 5: a keep-alive that stops on Ctrl-C and revokes. The lesson: crates/keepalive/src/main.rs,
//! step 3, and `renew_when_due` in crates/recipes/src/kept_lease.rs (one renewal: send, then read).
//!
//! Grant a lease of 3 seconds, put `alive = yes` on it, and renew it every second until Ctrl-C; then
//! revoke it, so that etcd deletes the key at once. Rust's keep-alive sends nothing unless you send it.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, PutOptions};

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
    let (mut keeper, mut answers) = client.lease_keep_alive(lease.id()).await?;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                keeper.keep_alive().await?;
                if let Some(answer) = answers.message().await? {
                    println!("renewed: ttl {}s", answer.ttl());
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    // Go: cli.Revoke(ctx, resp.ID), with a deadline so that stopping never hangs.
    tokio::time::timeout(Duration::from_secs(5), client.lease_revoke(lease.id())).await??;
    println!("revoked lease {:016x}", lease.id());
    Ok(())
}
