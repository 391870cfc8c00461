//! Exercise 7, beyond the article: put-if-absent, in one transaction. The lesson: crates/txn/src/main.rs.
//!
//! Claim `leader = me` only if nobody holds it, twice: the first claim writes it, the second finds it
//! taken and says by whom. A lease is not SETNX; a transaction on the create revision is.

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

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

const KEY: &str = "/workshop/07/leader";

async fn claim(client: &mut Client) -> anyhow::Result<()> {
    // Go: cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
    //         Then(clientv3.OpPut(key, "me")).Else(clientv3.OpGet(key)).Commit()
    let reply: TxnResponse = todo!("one Txn: when the create revision of KEY is 0, put; else get");
    if reply.succeeded() {
        println!("claimed {KEY}");
        return Ok(());
    }
    let holder = match reply.op_responses().first() {
        Some(TxnOpResponse::Get(got)) => got
            .kvs()
            .first()
            .map(|kv| kv.value_str().map(str::to_owned)),
        _ => None,
    };
    println!(
        "{KEY} is taken, by {}",
        holder.transpose()?.unwrap_or_default()
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let mut client = Client::connect(workshop::endpoints(), Some(options)).await?;
    claim(&mut client).await?;
    claim(&mut client).await?;
    Ok(())
}
