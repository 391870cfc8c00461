//! Exercise 7, beyond the article: put-if-absent, in one transaction. The lesson: crates/txn/src/main.rs.
//!
//! Claim `leader = me` only if nobody holds it, twice: the first claim writes it, the second finds it
//! taken and says by whom. A lease is not SETNX; a transaction on the create revision is.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp, TxnOpResponse};

const KEY: &str = "/workshop/07/leader";

async fn claim(client: &mut Client) -> anyhow::Result<()> {
    // Go: cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
    //         Then(clientv3.OpPut(key, "me")).Else(clientv3.OpGet(key)).Commit()
    let txn = Txn::new()
        .when([Compare::create_revision(KEY, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(KEY, "me", None)])
        .or_else([TxnOp::get(KEY, None)]);
    let reply = client.txn(txn).await?;
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
