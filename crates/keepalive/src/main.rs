//! # keepalive: a key that lives exactly as long as its program
//!
//! The article's KEEPALIVE program: grant a lease, PUT a key on it, then keep the lease alive and print
//! the TTL etcd reports after each renewal. How the program ends decides when the key goes: Ctrl-C or
//! SIGTERM revokes the lease, and etcd deletes the key at once; after SIGKILL, a crash or a lost network
//! nobody renews, and etcd deletes it by itself within TTL + 1 seconds. So a key that says "I am alive"
//! (a service registration, a lock) cannot outlive its owner by more than the TTL.
//!
//! **Renewing is the caller's job in Rust.** Go's `cli.KeepAlive` renews in the background and hands back
//! a channel of answers; etcd-client's `lease_keep_alive` hands back a `LeaseKeeper` (send ONE renewal)
//! and a stream (read ONE answer). `recipes::kept_lease::KeptLease` takes both and does the timing:
//! a renewal every TTL/3, TTL 0 read as "the lease is gone", a broken stream re-opened within the TTL.
//!
//! Run it: `cargo run -p keepalive` (`-- --count 3` stops after 3 renewals), then `etcdctl get name`.

mod cli;
mod steps;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use recipes::kept_lease::{KeptLease, Renewal};
use recipes::shutdown::{ExitBudget, Shutdown};

// One lease and one signal handler, taken in turn: the single-threaded runtime is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    let (key, value) = (&args.key, &args.value);
    // Catch Ctrl-C and SIGTERM from the start, so a signal during setup still leads to a revoke below.
    let mut shutdown = Shutdown::listen()?;

    // 0. Connect (`dial` probes the endpoints first: `Client::connect` alone is lazy, see the kv topic).
    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout})
    let connecting = etcd_connect::dial(&args.connect, |endpoints, options| {
        Client::connect(endpoints, Some(options))
    });
    // An etcd that accepts connections but does not answer holds this up to --dial-timeout, so a signal
    // stops it meanwhile: nothing exists in etcd yet, so there is nothing to clean up.
    let mut client = match shutdown.unless_stopped(connecting).await {
        Ok(client) => client?,
        Err(signal) => {
            println!("{signal} while connecting: stopped; nothing was created in etcd");
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());
    // etcd deletes a lease's keys when the lease ends: putting someone's existing key on our lease would
    // take it over, then delete it. So an existing key is refused before anything is granted.
    steps::key_is_free(&mut client, key).await?;

    // 1. Grant a lease: a countdown on the server. etcd may grant more than we asked (it raises very short
    //    TTLs), so the rest of the program uses the TTL from the reply.
    // Go: resp, err := cli.Grant(ctx, ttl)
    let granted = client.lease_grant(args.ttl, None).await;
    let granted = granted.with_context(|| format!("grant a lease of {}s", args.ttl))?;
    let (lease_id, ttl) = (granted.id(), granted.ttl());
    let id = format!("{lease_id:016x}"); // as etcdctl prints it, to paste into `etcdctl lease ...`
    println!("1. granted lease {id} with a TTL of {ttl}s");

    // 2. Put the key on the lease: left alone, it would go with the lease after the TTL. Put only if it
    //    still does not exist (its create revision is 0), in case another client created it since the
    //    check above; if nothing is put, the lease holds nothing of ours and is revoked.
    // Go: cli.Put(ctx, key, value, clientv3.WithLease(resp.ID))
    let on_lease = Some(PutOptions::new().with_lease(lease_id));
    let put = TxnOp::put(key.as_str(), value.as_str(), on_lease);
    let absent = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
    let written = client.txn(Txn::new().when([absent]).and_then([put])).await;
    let revision = steps::revoke_unless_put(&mut client, written, lease_id, &args).await?;
    println!("2. put {key} = {value} on lease {id} (revision {revision})");

    // 3. Open the keep-alive stream. It already renews the lease once (and fails if the lease is gone).
    // Go: ch, kaerr := cli.KeepAlive(ctx, resp.ID), here as the two ends of that channel
    let opened = client.lease_keep_alive(lease_id).await;
    let (keeper, stream) =
        opened.with_context(|| format!("open a keep-alive stream for lease {id}"))?;
    let mut lease = KeptLease::new(lease_id, ttl, keeper, stream);
    let every = lease.renew_every();
    println!("3. keep-alive stream open; renewing every {every:.1?} (a third of the TTL); Ctrl-C revokes the lease");

    let stopped_by = renew_until_stopped(&mut client, &mut lease, &mut shutdown, &args).await?;
    stop(&mut client, &args, &lease, stopped_by).await
}

/// 4. Renew until stopped, printing each answer as the article's loop does (`ttl: 5`): each resets the
///    lease's countdown to the full TTL. Returns what stopped it: a signal, or `--count`.
async fn renew_until_stopped(
    client: &mut Client,
    lease: &mut KeptLease,
    shutdown: &mut Shutdown,
    args: &cli::Args,
) -> Result<&'static str> {
    let (id, mut answers) = (format!("{:016x}", lease.id), 0);
    loop {
        // Go: cli.KeepAlive renews in the background, and the loop reads `ka := <-ch`. Here the renewal
        // is this call; `unless_stopped` ends the wait at once on Ctrl-C or SIGTERM.
        let renewal = match shutdown.unless_stopped(lease.renew_when_due()).await {
            Ok(renewal) => renewal,
            Err(signal) => return Ok(signal),
        };
        match renewal {
            Ok(Renewal::Alive { ttl }) => {
                answers += 1;
                println!("   ttl: {ttl} (renewal {answers}: lease {id} has {ttl}s again)");
                if args.count == Some(answers) {
                    return Ok("--count reached");
                }
            }
            // Beyond the article: the lease is gone (expired or revoked), and its key with it.
            Ok(Renewal::Gone) => return Err(steps::gone(client, lease, args).await),
            // Beyond the article: etcd restarted or stalled; the lease lives on within its TTL.
            Err(broken) => {
                let broken = recipes::errors::one_line(&broken);
                println!(
                    "   keep-alive stream broke ({broken}); re-opening it before the TTL runs out"
                );
                match shutdown.unless_stopped(lease.reopen(client)).await {
                    Ok(reopened) => reopened?,
                    Err(signal) => return Ok(signal),
                }
                println!("   keep-alive stream re-opened; lease {id} renewed");
            }
        }
    }
}

/// 5. The clean way out, on Ctrl-C, SIGTERM or `--count`: revoke the lease, so etcd deletes the key now
///    instead of up to a TTL later. The key is read first, to say what the revoke really did: another
///    client's overwrite takes it off our lease, and a revoke then leaves it alone. `ExitBudget` bounds
///    both calls together by --dial-timeout, so stopping never hangs on an etcd that stopped answering.
async fn stop(client: &mut Client, args: &cli::Args, lease: &KeptLease, why: &str) -> Result<()> {
    let mut budget = ExitBudget::new(args.connect.dial_timeout);
    let before = budget
        .call("read", client.get(args.key.as_str(), None))
        .await;
    // Go: cli.Revoke(ctx, resp.ID)
    let what = format!("{why}: revoke lease {:016x}", lease.id);
    let revoked = budget.call(what, client.lease_revoke(lease.id)).await;
    revoked.map_err(|e| steps::revoke_failed(e, args, lease, why))?;
    println!("{}", steps::what_the_revoke_did(before, args, lease, why));
    Ok(())
}
