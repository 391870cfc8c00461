//! Exercise 6: a lock held by two tasks in turn. The lesson: crates/lock/src/main.rs, steps 1 to 4.
//!
//! Two tasks, each with its own session (a lease kept alive), take the lock `/workshop/06/lock` one after
//! the other, hold it for half a second, and release it. Print `task N acquired` and `task N released`.

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

use etcd_client::{Client, ConnectOptions, LockOptions, LockResponse};
use recipes::kept_lease::Session;

const LOCK: &str = "/workshop/06/lock";

async fn hold_the_lock(mut client: Client, task: u32) -> anyhow::Result<()> {
    // Go: s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
    let lease = client.lease_grant(10, None).await?;
    let session = Session::start(&client, lease.id(), lease.ttl()).await?;

    // Go: m := concurrency.NewMutex(s, "/workshop/06/lock"); m.Lock(ctx)
    let locked: LockResponse = todo!("lock LOCK with the session's lease (LockOptions)");
    println!("task {task} acquired");
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("task {task} released");
    // Go: m.Unlock(ctx)
    todo!("unlock: with the key the lock call returned, not the name");

    // Go: s.Close()
    drop(session);
    client.lease_revoke(lease.id()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let client = Client::connect(workshop::endpoints(), Some(options)).await?;
    let one = tokio::spawn(hold_the_lock(client.clone(), 1));
    let two = tokio::spawn(hold_the_lock(client.clone(), 2));
    one.await??;
    two.await??;
    Ok(())
}
