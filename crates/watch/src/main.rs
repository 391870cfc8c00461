//! # watch: see every change to a key as it happens
//!
//! The article's WATCH program: connect, watch the key `name`, print each change (PUT or DELETE) as it
//! comes. Then it does what a watcher in a real service must do and the article leaves out:
//!
//! - watch every key under a prefix (`--prefix`), or replay history from a past revision (`--rev`);
//! - cope with a compacted history: when the revision to resume from is gone, read the current state and
//!   continue from there;
//! - survive a lost connection or an etcd restart: open the watch again with growing pauses, from the
//!   revision after the last change printed, so no change is lost or printed twice;
//! - take a replay of big values: one watch response can be far over etcd-client's 4 MiB default, so the
//!   watch goes through a `WatchClient` with a raised limit; an error that retrying cannot fix (a reply
//!   over even that limit, no permission) stops it with one clear line instead of a retry loop;
//! - stop cleanly on Ctrl-C or SIGTERM, canceling the watch on the server, even while still connecting.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`), and write from another terminal:
//!
//! ```text
//! cargo run -p watch                          # then: etcdctl put name hello ; etcdctl del name
//! cargo run -p watch -- --key /app/ --prefix  # then: etcdctl put /app/color red
//! cargo run -p watch -- --rev 1 --count 5     # the first 5 changes to `name` still in etcd's history
//! RUST_LOG=debug cargo run -p watch
//! ```
//!
//! Try next: `cargo run -p kv` in another terminal (it writes `name`); while this runs, restart etcd
//! (`scripts/etcd.sh down`, then `up`) and see it resume; `etcdctl compact <rev>` then `--rev 1` to see the
//! compaction path. In your own code, `WatchOptions::with_prev_key` also hands each event the value it
//! replaced, and `ResumingWatch` in `src/lib.rs` is steps 3 and 4 packed for a service.

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use etcd_client::{EventType, GetOptions, WatchOptions, WatchResponse, WatchStream};
use recipes::errors::explain;
use recipes::errors::is_transient;
use recipes::resuming_watch::{give_up, QuickBreaks, ResumingWatch, MAX_RESPONSE};
use recipes::shutdown::Shutdown;

// One watch, read in one loop: the single-threaded runtime is enough, and `select!` between the watch and
// the shutdown signal needs no extra task.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    // Listen for Ctrl-C / SIGTERM before anything else, so a signal during setup is not lost.
    let mut shutdown = Shutdown::listen()?;
    let key = args.key.as_str();
    let what = if args.prefix {
        format!("every key under {key}")
    } else {
        key.to_string()
    };
    // Every call to etcd below is bounded by this, so a dead or stuck etcd cannot hang the watcher.
    let timeout = args.connect.dial_timeout;

    // 0. Connect. Underneath, `etcd_connect::connect` calls `Client::connect` and then `status()` within
    //    --dial-timeout, because `Client::connect` is lazy and would succeed with nothing listening (see
    //    crates/etcd-connect/src/lib.rs). A frozen etcd can keep that wait going for the whole dial
    //    timeout, so Ctrl-C / SIGTERM is listened for meanwhile and stops it at once.
    let client = tokio::select! {
        signal = shutdown.recv() => {
            println!("stopped ({signal}) while connecting; nothing was watched");
            return Ok(());
        }
        client = etcd_connect::connect(&args.connect) => client?,
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // 1. Open the watch, as the article does with `client.Watch(ctx, "name")`. The default key is `name`,
    //    as there, and the lease and keepalive topics write that same key, so this watcher sees them.
    //    Beyond the article, the options: a prefix watch covers every key that starts with the key (a
    //    "directory"), and a start revision asks etcd to replay its history from there before going live.
    let mut options = WatchOptions::new();
    if args.prefix {
        options = options.with_prefix();
    }
    if let Some(rev) = args.rev {
        options = options.with_start_revision(rev);
    }
    //    The watch goes through a `WatchClient` whose decoding limit we raise, not through
    //    `client.watch`, which keeps etcd-client's default of 4 MiB per message. etcd refuses a *request*
    //    over --max-request-bytes (1.5 MiB by default), but one watch *response* can carry many events:
    //    a replay of history packs up to 1,000 revisions into one message, so five 1 MB values replayed
    //    with --rev make a 5 MB reply. Over the limit, the reply fails to decode, every time. MAX_RESPONSE
    //    is 64 MiB: about 40 writes of etcd's largest size, and it costs nothing until such a reply comes
    //    (a cap, not a buffer). A reply even bigger still fails: that is an error no retry can fix, so
    //    the watcher stops with one line saying so (see the stream loop below). The same limit goes on
    //    the kv client of step 3, whose GET under a prefix can be as big.
    let mut watch_client = client
        .watch_client()
        .max_decoding_message_size(MAX_RESPONSE);
    let mut stream = tokio::time::timeout(timeout, watch_client.watch(key, Some(options)))
        .await
        .with_context(|| format!("etcd did not answer within {timeout:?}"))?
        .map_err(|e| anyhow!(explain(&e)))
        .with_context(|| format!("cannot open a watch on {what}"))?;
    //    `watch` returns as soon as the stream is open, but the watch only exists once etcd answers
    //    on it with `created`. Only then is a write guaranteed to be reported, so only then do we say
    //    "watching". The answer's header holds the store revision at that moment.
    let created = tokio::time::timeout(timeout, stream.message())
        .await
        .with_context(|| format!("etcd did not confirm the watch within {timeout:?}"))?
        .map_err(|e| anyhow!(explain(&e)))
        .and_then(confirmation)
        .with_context(|| format!("cannot open a watch on {what}"))?;
    let mut watch_id = created.watch_id();
    // Whether each watch, once open, was of any use; see step 4.
    let mut breaks = QuickBreaks::default();
    breaks.opened();
    let store_revision = created.header().map_or(0, |h| h.revision());
    // The one number that makes resuming exact: the first revision not printed yet. A watch "from now"
    // reports what comes after the store revision of its confirmation; we keep that as a number, so that
    // a reconnect asks for it instead of a later "now" that would skip what happened in between.
    let mut next_revision = args.rev.unwrap_or(store_revision + 1);
    let replay = match args.rev {
        Some(rev) if rev <= store_revision => " (replaying history first)",
        _ => "",
    };
    let until = match args.count {
        Some(n) => format!("stopping after {n} change(s) or Ctrl-C"),
        None => "Ctrl-C to stop".into(),
    };
    println!("watching {what} from revision {next_revision}{replay}; {until}");
    if next_revision > store_revision + 1 {
        // etcd accepts a start revision it has not reached yet: the watch stays quiet until then.
        println!(
            "   revision {next_revision} is in the future: the store is at revision {store_revision}, and \
             changes from revision {next_revision} on will show as they happen"
        );
    }

    let mut printed: u64 = 0;
    loop {
        // 2. Wait for etcd's next message on the stream, or for Ctrl-C / SIGTERM (step 5), whichever
        //    comes first. One message can carry several events: all the changes of one transaction, or a
        //    batch of history being replayed.
        let message = tokio::select! {
            signal = shutdown.recv() => return stop(stream, watch_id, signal, timeout).await,
            message = stream.message() => message,
        };
        let lost = match message {
            Ok(Some(response)) if !response.canceled() => {
                for event in response.events() {
                    // etcd always sends the key-value; a DELETE carries only the key, as its value is
                    // gone (`WatchOptions::with_prev_key` would bring the old one along).
                    let Some(kv) = event.kv() else { continue };
                    let changed = String::from_utf8_lossy(kv.key());
                    // `mod_revision` is the store revision of this change (for a delete, of the delete).
                    match event.event_type() {
                        EventType::Put => println!(
                            "PUT {changed} = {} (revision {})",
                            String::from_utf8_lossy(kv.value()),
                            kv.mod_revision()
                        ),
                        EventType::Delete => {
                            println!("DELETE {changed} (revision {})", kv.mod_revision())
                        }
                    }
                    next_revision = kv.mod_revision() + 1;
                    breaks.delivered();
                    printed += 1;
                    if Some(printed) == args.count {
                        println!("saw {printed} change(s), as asked by --count");
                        return stop(stream, watch_id, "--count", timeout).await;
                    }
                }
                // Anything without events (a progress notification, for instance) changes nothing.
                continue;
            }

            // -- beyond the article --

            // 3. etcd canceled the watch because the revision we asked for was compacted away: the
            //    changes in between cannot be replayed, and asking again from there would fail again.
            //    The state they led to can be read, though. A GET is a snapshot at one store revision, so
            //    a new watch from that revision + 1 continues exactly after it. (`ResumingWatch::catch_up`
            //    in src/lib.rs packs the same for a service.)
            Ok(Some(response)) if response.compact_revision() > 0 => {
                let compact_revision = response.compact_revision();
                println!(
                    "revision {next_revision} was compacted away (etcd keeps history from revision \
                     {compact_revision} on): the changes from {next_revision} to {} cannot be replayed",
                    compact_revision - 1
                );
                let caught_up = async {
                    let get_options = args.prefix.then(|| GetOptions::new().with_prefix());
                    let mut kv_client = client.kv_client().max_decoding_message_size(MAX_RESPONSE);
                    let state = tokio::time::timeout(timeout, kv_client.get(key, get_options))
                        .await
                        .context("no answer to the GET")??;
                    let read_at = state.header().map_or(0, |h| h.revision());
                    println!("current state of {what} at revision {read_at} (read with GET):");
                    if state.kvs().is_empty() {
                        let nothing = if args.prefix {
                            "no keys under it"
                        } else {
                            "the key does not exist"
                        };
                        println!("   ({nothing})");
                    }
                    for kv in state.kvs() {
                        println!(
                            "   {} = {} (last written at revision {})",
                            String::from_utf8_lossy(kv.key()),
                            String::from_utf8_lossy(kv.value()),
                            kv.mod_revision()
                        );
                    }
                    next_revision = read_at + 1;
                    let mut options = WatchOptions::new().with_start_revision(next_revision);
                    if args.prefix {
                        options = options.with_prefix();
                    }
                    let mut fresh =
                        tokio::time::timeout(timeout, watch_client.watch(key, Some(options)))
                            .await
                            .context("no answer to the new watch")??;
                    let created = tokio::time::timeout(timeout, fresh.message())
                        .await
                        .context("etcd did not confirm the new watch")??;
                    let created = confirmation(created)?;
                    anyhow::Ok((fresh, created.watch_id()))
                };
                match caught_up.await {
                    Ok(fresh) => {
                        (stream, watch_id) = fresh;
                        breaks.opened();
                        breaks.delivered(); // the state it printed
                        println!("continuing from revision {next_revision}");
                        continue;
                    }
                    // The GET's reply is over MAX_RESPONSE, or etcd refused it: the same would happen
                    // on every try.
                    Err(e) => match e.downcast::<etcd_client::Error>() {
                        Ok(e) if !is_transient(&e) => {
                            return Err(give_up(format!("catch up on {what}"), e, MAX_RESPONSE))
                        }
                        // etcd went away in the middle: handled like any lost connection, from
                        // `next_revision`, which already points after the state printed if the GET
                        // worked.
                        Ok(e) => explain(&e),
                        Err(e) => format!("{e:#}"),
                    },
                }
            }
            Ok(Some(response)) => bail!(
                "etcd canceled the watch on {what}: {}",
                response.cancel_reason()
            ),
            Ok(None) => "etcd closed the stream".into(),
            // A reply over MAX_RESPONSE (see step 1), a permission taken away: opening the watch again
            // from the same revision would meet the same error, forever. Stop, saying what it was.
            Err(e) if !is_transient(&e) => {
                return Err(give_up(format!("watch {what}"), e, MAX_RESPONSE))
            }
            Err(e) => explain(&e),
        };

        // 4. The stream broke: etcd restarted, the network dropped. etcd-client's channel connects again
        //    by itself once etcd is back, but a watch stream is not re-opened for us: we open a new watch
        //    from `next_revision`. Changes made meanwhile are still in etcd's history and arrive first;
        //    none is repeated. `ResumingWatch::reopen` (src/lib.rs) retries with growing pauses, each try
        //    bounded by --dial-timeout, until etcd confirms the watch. Ctrl-C stops the wait.
        //    A watch that opens fine and then breaks at once, every time, would still turn this loop into
        //    a busy one, as each round starts with a successful open. `QuickBreaks` (src/lib.rs) counts
        //    the watches in a row that broke before delivering anything and gives a growing pause to
        //    wait first; one that delivered a change, or stayed open 10 s, starts the count over.
        println!("lost the connection to etcd ({lost}); reconnecting");
        let pause = breaks.broke();
        if !pause.is_zero() {
            println!(
                "   the last watch broke before it delivered anything; waiting {:.1}s before the next",
                pause.as_secs_f64()
            );
            tokio::select! {
                signal = shutdown.recv() => {
                    println!("stopped ({signal}) while reconnecting; no watch was open to cancel");
                    return Ok(());
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
        let mut resume = ResumingWatch::new(key, args.prefix, Some(next_revision));
        let reopened = tokio::select! {
            signal = shutdown.recv() => {
                println!("stopped ({signal}) while reconnecting; no watch was open to cancel");
                return Ok(());
            }
            reopened = resume.reopen(&client, timeout, |attempt, _, pause| {
                println!(
                    "   etcd is not back yet (attempt {attempt}); trying again in {:.1}s",
                    pause.as_secs_f64()
                );
            }) => reopened?,
        };
        (stream, watch_id) = (reopened.stream, reopened.watch_id);
        breaks.opened();
        println!("reconnected: resumed from revision {next_revision}");
    }
}

/// Steps 1 and 3: checks etcd's first answer on a new watch stream, which must be the `created`
/// confirmation. A watch etcd refuses (no permission on the key, for example) is confirmed and canceled
/// in the same answer.
fn confirmation(first: Option<WatchResponse>) -> Result<WatchResponse> {
    let Some(created) = first else {
        bail!("etcd closed the stream before confirming the watch");
    };
    if created.canceled() {
        bail!("etcd refused the watch: {}", created.cancel_reason());
    }
    if !created.created() {
        bail!("etcd answered the watch with something other than a confirmation");
    }
    Ok(created)
}

/// 5. Cancel the watch on the server, so etcd stops tracking it, then exit 0.
///
/// `cancel` only queues the request on the stream; exiting right after it could close the connection
/// before the request leaves. Waiting for etcd's `canceled` answer proves it dropped the watch. The wait is
/// bounded: an unconfirmed cancel is harmless, as etcd drops a watch when its stream closes.
async fn stop(mut stream: WatchStream, watch_id: i64, why: &str, timeout: Duration) -> Result<()> {
    let cancel = tokio::time::timeout(timeout, stream.cancel(watch_id))
        .await
        .unwrap_or_else(|_| {
            Err(etcd_client::Error::WatchError(
                "no room to send the cancel".into(),
            ))
        });
    let confirmed = match cancel {
        Ok(()) => tokio::time::timeout(timeout, async {
            loop {
                match stream.message().await {
                    Ok(Some(r)) if r.canceled() && r.watch_id() == watch_id => return true,
                    // Changes that were already on their way; we have stopped, so they are dropped.
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false),
        // The stream is already closed, so the server has dropped the watch anyway.
        Err(e) => {
            log::debug!("cannot send the cancel for watch {watch_id}: {e}");
            false
        }
    };
    if confirmed {
        println!("stopped ({why}): watch {watch_id} canceled on the server");
    } else {
        println!("stopped ({why}): etcd did not confirm the cancel; it drops the watch when we disconnect");
    }
    Ok(())
}
