//! # lease: a key with a time limit
//!
//! The article's LEASE program: grant a lease of 20 seconds, PUT a key on it, and etcd deletes the key by
//! itself when the lease ends. (A lease is an expiry, like Redis `EXPIRE`, not `SETNX`: see README.md.)
//! Beyond the article, it stays to watch the key go, with the lease's countdown beside it, tells an expiry
//! from a revoke, and revokes the lease on Ctrl-C (those steps are short functions in `src/steps.rs`).
//!
//! `cargo run -p lease` (20 s), `cargo run -p lease -- --ttl 5 --key /svc/a --value up`, or `--no-wait` to
//! exit right after the PUT, like the article's program.

mod cli;
mod steps;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use recipes::errors::one_line;
use recipes::resuming_watch::{Delivery, ResumingWatch};
use recipes::shutdown::Shutdown;
use steps::Lease;

// One lease, one watch, one timer: the single-threaded runtime is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    let (key, value) = (&args.key, &args.value);
    // Listen from the start: a Ctrl-C during setup is kept, and step 5 revokes the lease for it.
    let mut shutdown = Shutdown::listen()?;
    // 0. Connect. `dial` asks each endpoint for its status first (`Client::connect` alone is lazy), within
    //    --dial-timeout, and explains a failure in one line. Ctrl-C meanwhile: nothing to clean up yet.
    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout})
    let connecting = etcd_connect::dial(&args.connect, |endpoints, options| {
        Client::connect(endpoints, Some(options))
    });
    let mut client = match shutdown.unless_stopped(connecting).await {
        Ok(client) => client?,
        Err(signal) => {
            println!("{signal} while connecting: stopped; nothing was created in etcd");
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());
    // etcd deletes the keys on a lease when it ends, even one it had before: refuse a key that exists.
    let checking = format!("check that {key} does not exist yet");
    let found = client.get(key.as_str(), None).await.context(checking)?;
    if !found.kvs().is_empty() {
        bail!("{}", steps::taken(key));
    }

    // 1. Grant a lease: a countdown kept by the server. etcd raises a very short TTL (to about 2 s), so
    //    use the TTL in the reply. The clock starts before asking: an expiry can never seem early.
    let asked_at = Instant::now();
    // Go: resp, err := cli.Grant(ctx, ttl)
    let granted = client.lease_grant(args.ttl, None).await;
    let granted = granted.with_context(|| format!("grant a lease of {}s", args.ttl))?;
    let lease = Lease::new(&granted, asked_at, key, args.connect.dial_timeout);
    let (id, ttl) = (lease.hex(), lease.ttl); // the ID as etcdctl prints it, for `etcdctl lease ...`
    println!("1. granted lease {id} with a TTL of {ttl}s");

    // 2. PUT the key on the lease: it lives as long as the lease now. Only if the key does not exist
    //    (create revision 0), in one transaction: Redis `SET key value NX EX ttl`.
    // Go: cli.Put(ctx, key, value, clientv3.WithLease(resp.ID))
    let on_lease = Some(PutOptions::new().with_lease(lease.id));
    let put = TxnOp::put(key.as_str(), value.as_str(), on_lease);
    let absent = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
    let put = client.txn(Txn::new().when([absent]).and_then([put])).await;
    if !put.as_ref().is_ok_and(|put| put.succeeded()) {
        let _ = steps::revoke(client, &lease).await; // nothing of ours is on it: no reason to wait
        put.with_context(|| format!("put {key} on lease {id}"))?;
        bail!("{}", steps::taken(key));
    }
    let revision = put?.header().map_or(0, |h| h.revision());
    println!("2. put {key} = {value} on lease {id} (revision {revision}); etcd deletes it when the lease ends");
    if args.no_wait {
        println!("not waiting (--no-wait): {key} disappears in about {ttl}s; see `etcdctl lease timetolive {id} --keys`");
        return Ok(());
    }

    println!("-- beyond the article --");
    // Steps 3 and 4 until etcd deletes the key. On Ctrl-C or SIGTERM, `unless_stopped` drops the wait
    // wherever it is, and step 5 revokes the lease, as it does when the wait cannot end well.
    let waiting = watch_it_go(&client, &lease, revision + 1);
    let failed = match shutdown.unless_stopped(waiting).await {
        Ok(waited) => waited,
        Err(signal) => {
            return steps::revoke(client, &lease)
                .await
                .map(|what| println!("{signal}: {what}"))
                .map_err(|e| e.context(signal))
        }
    };
    let Err(failed) = failed else { return Ok(()) };
    let what = steps::revoke(client, &lease).await;
    let what = what.unwrap_or_else(|e| one_line(&e));
    bail!("{}; {what}", one_line(&failed))
}

/// Steps 3 and 4, with the countdown beside them.
async fn watch_it_go(client: &Client, lease: &Lease, from: i64) -> Result<()> {
    // 3. Watch from the revision right after our PUT, not from "now": etcd replays every change since,
    //    so even a delete that came first is seen. `ResumingWatch` retries until etcd answers, and opens
    //    a broken stream again from the revision after the last event it delivered.
    let key = lease.key.as_str();
    // Go: rch := cli.Watch(ctx, key, clientv3.WithRev(rev)), kept open across breaks
    let mut watch = ResumingWatch::new(key, false, Some(from)).with_attempt_timeout(lease.limit);
    watch.next(client, steps::retrying).await?;
    println!("3. watching {key} from revision {from}; Ctrl-C revokes the lease instead of waiting");
    let at = tokio::select! {
        at = wait_for_delete(client, watch, lease) => at?,
        never = steps::countdown(client.clone(), lease) => match never {},
    };
    steps::explain_delete(client.clone(), lease, &at).await
}

/// 4. Wait for etcd to delete the key: a DELETE event, as for any delete. `lease::deleted_in` (src/lib.rs)
///    reads the events, and fails on a PUT that took the key off the lease. Returns where it happened.
async fn wait_for_delete(
    client: &Client,
    mut watch: ResumingWatch,
    lease: &Lease,
) -> Result<String> {
    loop {
        match watch.next(client, steps::retrying).await? {
            Delivery::Events(got) => {
                if let Some(at) = lease::deleted_in(got.events(), lease.id)? {
                    return Ok(format!("at revision {at}"));
                }
            }
            // etcd compacted the history the watch needed: a read of the key says if it is gone.
            Delivery::CaughtUp(now) => {
                if let Some(by) = lease::deleted_by(&now, lease.id)? {
                    return Ok(format!("by revision {by}"));
                }
            }
            Delivery::Opened { from } | Delivery::Reopened { from } => {
                println!("   watching {} again from revision {from}", lease.key)
            }
        }
    }
}
