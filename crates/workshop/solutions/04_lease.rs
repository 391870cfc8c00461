//! Exercise 4: a lease whose key disappears. The lesson: crates/lease/src/main.rs, steps 1 and 2.
//!
//! Grant a lease of 2 seconds, put `temp = soon gone` on it, and wait until etcd has deleted the key.

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, PutOptions};

const KEY: &str = "/workshop/04/temp";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let mut client = Client::connect(workshop::endpoints(), Some(options)).await?;

    // Go: resp, err := cli.Grant(ctx, 2)
    let lease = client.lease_grant(2, None).await?;
    println!(
        "granted lease {:016x} with a TTL of {}s",
        lease.id(),
        lease.ttl()
    );

    // Go: _, err = cli.Put(ctx, key, "soon gone", clientv3.WithLease(resp.ID))
    let on_lease = PutOptions::new().with_lease(lease.id());
    client.put(KEY, "soon gone", Some(on_lease)).await?;
    println!("put {KEY} on lease {:016x}", lease.id());

    // Ask every 200 ms until the key is gone (a watch would do too).
    let started = Instant::now();
    while !client.get(KEY, None).await?.kvs().is_empty() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "{KEY} is still there after 10 s: was it put with the lease (PutOptions::new().with_lease)?"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{KEY} is gone after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
