//! # keepalive: a key that lives exactly as long as its program
//!
//! The article's KEEPALIVE program: grant a lease, PUT a key on it, then keep the lease alive and print
//! the TTL etcd reports after each renewal. The key stays while the program runs, however long that is.
//!
//! **Why leases matter: how the program ends decides when the key goes.**
//!
//! - Ctrl-C or SIGTERM: the program revokes the lease on its way out, and etcd deletes the key at once.
//! - SIGKILL, a crash, a lost network, a dead machine: nobody revokes anything, but nobody renews either,
//!   so etcd deletes the key by itself within TTL + 1 seconds. This is what service registration and
//!   locks rely on: a key that says "I am alive" cannot outlive its owner by more than the TTL.
//!
//! **Renewing is the caller's job in Rust.** Go's `client.KeepAlive(ctx, id)` returns a channel and renews
//! in the background by itself. etcd-client's `lease_keep_alive(id)` returns two ends of a stream instead:
//! a `LeaseKeeper`, whose `keep_alive()` sends ONE renewal, and a `LeaseKeepAliveStream` that yields ONE
//! answer per renewal. Nothing renews unless the program sends it. So `KeptLease` (in `src/lib.rs`):
//!
//! - renews every TTL/3, so a renewal can be late or lost and the lease still lives;
//! - treats an answer with TTL 0 as "the lease is gone" (it expired, or someone ran `etcdctl lease revoke`):
//!   renewing cannot bring it back, the key is already deleted, so this program exits with an error;
//! - re-opens the stream when it breaks (etcd restarted or stalled, connection reset), as long as the
//!   lease is still inside its TTL (last confirmed renewal + TTL); past that it fails clearly.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p keepalive                   # 5 s lease, renewed until Ctrl-C
//! cargo run -p keepalive -- --ttl 10 --key /svc/a --value up
//! cargo run -p keepalive -- --count 3      # stop (and revoke) after 3 renewals
//! etcdctl get name                         # in another terminal: still there after many TTLs
//! ```
//!
//! Try next: run it, then `kill -9 <pid>` and `watch -n 0.5 etcdctl get name` to see the key vanish after
//! the TTL; or `etcdctl lease revoke <id>` to see the program notice that its lease is gone; or
//! `cargo run -p watch` in a third terminal, to see the PUT and, on Ctrl-C, the DELETE.

mod cli;

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use recipes::kept_lease::{KeptLease, Renewal};

// One lease and one signal handler, handled in turn by a `select!`: the single-threaded runtime is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    let (key, value) = (&args.key, &args.value);
    // Catch Ctrl-C and SIGTERM from the start, so a signal during setup still leads to a revoke below.
    let mut shutdown = recipes::shutdown::Shutdown::listen()?;

    // 0. Connect: `Client::connect` plus a `status()` probe, because `Client::connect` alone is lazy
    //    (see the `kv` topic and crates/etcd-connect/src/lib.rs).
    //    An etcd that accepts connections but does not answer keeps this waiting up to --dial-timeout,
    //    so Ctrl-C is listened to meanwhile: nothing exists in etcd yet, so there is nothing to clean up.
    let mut client = tokio::select! {
        client = etcd_connect::connect(&args.connect) => client?,
        signal = shutdown.recv() => {
            println!("{signal} while connecting: stopped; nothing was created in etcd");
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // Before anything is written: the key must not exist yet. etcd deletes the keys on a lease when the
    // lease ends (Ctrl-C revokes it; a killed program lets it run out), so putting someone's existing
    // key on our lease would take it over, and then delete it. Refuse before granting anything.
    let existing = client
        .get(key.as_str(), None)
        .await
        .with_context(|| format!("check that {key} does not exist yet"))?;
    if !existing.kvs().is_empty() {
        bail!("{}", taken(key));
    }

    // 1. Grant a lease: a countdown on the server, as in the `lease` topic. etcd may grant more than we
    //    asked (it raises very short TTLs), so the rest of the program uses the TTL from the reply.
    let granted = client
        .lease_grant(args.ttl, None)
        .await
        .with_context(|| format!("grant a lease of {}s", args.ttl))?;
    let (lease_id, ttl) = (granted.id(), granted.ttl());
    // etcdctl prints lease IDs as 16 hex digits: the same form can be pasted into `etcdctl lease ...`.
    let id = format!("{lease_id:016x}");
    println!("1. granted lease {id} with a TTL of {ttl}s");

    // 2. Attach the key. Left alone, it would be deleted after the TTL. (The article writes "/name"; our
    //    default key is `name`, the key `cargo run -p watch` watches, so a watch in another terminal
    //    sees this write and, at the end, the delete.)
    //    Put-if-absent, as in the `lease` topic: one transaction that writes only if the key's create
    //    revision is 0 (it does not exist), in case another client created it since the check above.
    //    If it writes nothing, the lease holds nothing of ours: revoke it rather than leave it ticking.
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            value.as_str(),
            Some(PutOptions::new().with_lease(lease_id)),
        )]);
    let put = match client.txn(txn).await {
        Ok(put) if put.succeeded() => put,
        not_put => {
            let limit = args.connect.dial_timeout;
            let revoked = tokio::time::timeout(limit, client.lease_revoke(lease_id)).await;
            log::debug!("revoking lease {id}, as nothing was put on it: {revoked:?}");
            return Err(match not_put {
                Ok(_) => anyhow!("{}", taken(key)),
                Err(e) => anyhow!(e).context(format!("put {key} on lease {id}")),
            });
        }
    };
    println!(
        "2. put {key} = {value} on lease {id} (revision {})",
        put.header().map_or(0, |h| h.revision())
    );

    // 3. Open the keep-alive stream. Go's `KeepAlive` hands back one channel and renews by itself;
    //    etcd-client hands back the two ends: `keeper.keep_alive()` sends one renewal, `stream.message()`
    //    reads one answer. Opening it already renews the lease once (and fails if the lease is gone).
    //    `KeptLease` (src/lib.rs) takes both ends and does the timing from here on.
    let (keeper, stream) = client
        .lease_keep_alive(lease_id)
        .await
        .with_context(|| format!("open a keep-alive stream for lease {id}"))?;
    let mut lease = KeptLease::new(lease_id, ttl, keeper, stream);
    println!(
        "3. keep-alive stream open; renewing every {:.1?} (a third of the TTL); Ctrl-C revokes the lease",
        lease.renew_every()
    );

    // 4. Renew until stopped, printing each answer as the article's loop does (`ttl: 5`). Each answer
    //    resets the lease's countdown to the full TTL. Everything past the printing is beyond the
    //    article: the lease that is gone, the broken stream, and the clean stop of step 5.
    let mut answers = 0;
    loop {
        let renewal = tokio::select! {
            signal = shutdown.recv() => return stop(&mut client, &args, &lease, signal).await,
            renewal = lease.renew_when_due() => renewal,
        };
        match renewal {
            Ok(Renewal::Alive { ttl }) => {
                answers += 1;
                println!("   ttl: {ttl} (renewal {answers}: lease {id} has {ttl}s again)");
                if args.count == Some(answers) {
                    return stop(&mut client, &args, &lease, "--count reached").await;
                }
            }
            Ok(Renewal::Gone) => {
                // etcd's TTL 0 does not say why; our own timing sometimes can (`why_gone`). Nor does it
                // say what became of the key: read it back rather than assume it was deleted.
                let why = lease.why_gone();
                let key_now = match tokio::time::timeout(
                    args.connect.dial_timeout,
                    client.get(key.as_str(), None),
                )
                .await
                {
                    Ok(Ok(got)) => match got.kvs().first() {
                        None => format!("etcd deleted {key} with it"),
                        Some(_) => format!(
                            "{key} is still there: another client overwrote it, which took it off the lease"
                        ),
                    },
                    _ => format!("etcd deleted {key} with it if it was still on the lease"),
                };
                bail!("lease {id} is gone: etcd answered a renewal with TTL 0; {why}; {key_now}")
            }
            Err(broken) => {
                println!(
                    "   keep-alive stream broke ({}); re-opening it before the TTL runs out",
                    recipes::errors::one_line(&broken)
                );
                tokio::select! {
                    signal = shutdown.recv() => return stop(&mut client, &args, &lease, signal).await,
                    reopened = lease.reopen(&mut client) => reopened?,
                }
                println!("   keep-alive stream re-opened; lease {id} renewed");
            }
        }
    }
}

// 5. The clean way out, on Ctrl-C, SIGTERM or `--count`: revoke the lease, so etcd deletes the key now
//    instead of up to a TTL later. Say what it really did: read the key first, because another client
//    may have overwritten it, which takes it off our lease (a revoke then leaves it alone). Both calls
//    together are bounded by the dial timeout, so stopping never hangs on an etcd that stopped
//    answering; the key then goes when the TTL runs out, since nobody renews it any more.
async fn stop(client: &mut Client, args: &cli::Args, lease: &KeptLease, why: &str) -> Result<()> {
    let (key, dial_timeout, ttl) = (&args.key, args.connect.dial_timeout, lease.ttl);
    let id = format!("{:016x}", lease.id);
    let deadline = tokio::time::Instant::now() + dial_timeout;
    let no_answer = || {
        anyhow!(
            "{why}: etcd did not answer within {dial_timeout:?}, so lease {id} may not be revoked; \
             {key} goes when its TTL of {ttl}s runs out, since nobody renews it now"
        )
    };
    // The lease the key is on now: Some(0) for none, None for a key that is gone.
    let before = match tokio::time::timeout_at(deadline, client.get(key.as_str(), None)).await {
        Ok(Ok(got)) => Ok(got.kvs().first().map(|kv| kv.lease())),
        Ok(Err(e)) => Err(e),
        Err(_) => return Err(no_answer()),
    };
    tokio::time::timeout_at(deadline, client.lease_revoke(lease.id))
        .await
        .map_err(|_| no_answer())?
        .with_context(|| format!("{why}: revoke lease {id}"))?;
    match before {
        Ok(Some(on)) if on == lease.id => {
            println!("{why}: revoked lease {id}, so etcd deleted {key} at once")
        }
        Ok(Some(_)) => println!(
            "{why}: revoked lease {id}; {key} was overwritten by another client and is no longer on it, so it stays"
        ),
        Ok(None) => println!("{why}: revoked lease {id}; {key} was already gone, so it deleted nothing"),
        Err(e) => {
            log::debug!("reading {key} before the revoke failed: {e}");
            println!("{why}: revoked lease {id}, so etcd deleted {key} if it was still on it");
        }
    }
    Ok(())
}

/// Why this program refuses a key that exists, and what to do: one line.
fn taken(key: &str) -> String {
    format!(
        "{key} already exists and this program did not create it: on a lease, etcd would delete it when \
         the lease ends; choose another key with --key, or remove it first with `etcdctl del {key}`"
    )
}
