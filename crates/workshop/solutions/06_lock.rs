//! Exercise 6: a lock held by two tasks in turn. The lesson: crates/lock/src/main.rs, steps 1 to 4.
//!
//! Two tasks, each with its own session (a lease kept alive), take the lock `/workshop/06/lock` one after
//! the other, hold it for half a second, and release it. Print `task N acquired` and `task N released`.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, LockOptions};
use recipes::kept_lease::Session;

const LOCK: &str = "/workshop/06/lock";

async fn hold_the_lock(mut client: Client, lease_id: i64, task: u32) -> anyhow::Result<()> {
    // Go: m := concurrency.NewMutex(s, "/workshop/06/lock"); m.Lock(ctx)
    let options = LockOptions::new().with_lease(lease_id);
    let locked = client.lock(LOCK, Some(options)).await?;
    println!("task {task} acquired");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Go: m.Unlock(ctx)
    client.unlock(locked.key()).await?;
    println!("task {task} released");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let mut client = Client::connect(workshop::endpoints(), Some(options)).await?;

    // Go: s1, err := concurrency.NewSession(cli, concurrency.WithTTL(10)), and s2 the same
    let (lease1, lease2) = (
        client.lease_grant(10, None).await?,
        client.lease_grant(10, None).await?,
    );
    let session1 = Session::start(&client, lease1.id(), lease1.ttl()).await?;
    let session2 = Session::start(&client, lease2.id(), lease2.ttl()).await?;

    let one = tokio::spawn(hold_the_lock(client.clone(), session1.lease_id(), 1));
    let two = tokio::spawn(hold_the_lock(client.clone(), session2.lease_id(), 2));
    one.await??;
    two.await??;

    // Go: s1.Close(); s2.Close()
    drop((session1, session2));
    client.lease_revoke(lease1.id()).await?;
    client.lease_revoke(lease2.id()).await?;
    Ok(())
}
