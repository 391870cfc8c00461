//! # watch: the article's WATCH program (connect, watch `name`, print each PUT and DELETE as it comes),
//! then what a watcher in a service needs beyond it: a prefix, a replay from a past revision, resuming
//! without a gap or a repeat after a lost stream or a compaction, and canceling the watch on Ctrl-C.

mod cli;
mod show;

use std::{process::ExitCode, time::Duration};

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd_client::{Client, EventType, WatchOptions, WatchStream};
use recipes::errors::{explain, is_transient};
use recipes::resuming_watch::{self, give_up, Opened, QuickBreaks, ResumingWatch, MAX_RESPONSE};
use recipes::shutdown::Shutdown;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    let mut shutdown = Shutdown::listen()?; // first, so that a signal during setup is not lost
    let (what, timeout) = (show::what(&args), args.connect.dial_timeout);

    // 1. Connect. `Client::connect` is lazy: `dial` probes each endpoint within --dial-timeout.
    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout})
    let dialing = etcd_connect::dial(&args.connect, |endpoints, options| {
        Client::connect(endpoints, Some(options))
    });
    let client = match shutdown.unless_stopped(dialing).await {
        Ok(client) => client?,
        Err(signal) => return show::stopped_connecting(signal),
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // 2. Watch (below). `next` is the first revision not printed yet: all it takes to resume exactly.
    let (mut stream, mut id, mut next) = watch(&client, &args, &what).await?;
    let (mut printed, mut breaks) = (0, QuickBreaks::default());
    breaks.opened();
    loop {
        // 3. Print each change. Go: for wresp := range rch { for _, ev := range wresp.Events {...} }
        let lost = match shutdown.unless_stopped(stream.message()).await {
            Err(signal) => return stop(stream, id, signal, timeout).await,
            Ok(Ok(Some(response))) if !response.canceled() => {
                // One reply may carry several events: a transaction's, or a batch of history.
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let value = String::from_utf8_lossy(kv.value()); // empty for a DELETE
                    let (key, rev) = (String::from_utf8_lossy(kv.key()), kv.mod_revision());
                    match event.event_type() {
                        EventType::Put => println!("PUT {key} = {value} (revision {rev})"),
                        EventType::Delete => println!("DELETE {key} (revision {rev})"),
                    }
                    (next, printed) = (rev + 1, printed + 1);
                    breaks.delivered();
                    if Some(printed) == args.count {
                        println!("saw {printed} change(s), as asked by --count");
                        return stop(stream, id, "--count", timeout).await;
                    }
                }
                continue; // a reply without events (a progress notification) changes nothing
            }
            // Beyond the article: the history from `next` was compacted (step 4), or the stream broke.
            Ok(Ok(Some(response))) if response.compact_revision() > 0 => {
                show::compacted(next, response.compact_revision());
                breaks.delivered(); // not a quick break: it said why it ended
                None
            }
            Ok(Ok(Some(r))) => bail!("etcd canceled the watch on {what}: {}", r.cancel_reason()),
            Ok(Err(e)) if is_transient(&e) => Some(explain(&e)),
            // A reply over MAX_RESPONSE, a permission taken away: the same on every retry, so stop.
            Ok(Err(e)) => bail!(give_up(format!("watch {what}"), e, MAX_RESPONSE)),
            Ok(Ok(None)) => Some("etcd closed the stream".into()),
        };
        let pause = breaks.broke();
        show::lost(lost.as_deref(), pause);
        let reopening = resume(&client, &args, next, lost, pause);
        let opened = match shutdown.unless_stopped(reopening).await {
            Ok(opened) => opened?,
            Err(signal) => return show::stopped_reconnecting(signal),
        };
        (stream, id, next) = (opened.stream, opened.watch_id, opened.start_revision);
        breaks.opened();
    }
}

/// Step 2: watch the key (`name`, which kv, lease and keepalive write too) or every key under it, from
/// now or from --rev. Returns the stream, etcd's id for the watch, and the first revision it reports.
async fn watch(client: &Client, args: &cli::Args, what: &str) -> Result<(WatchStream, i64, i64)> {
    // Go: rch := cli.Watch(ctx, key, clientv3.WithRev(rev), clientv3.WithPrefix())
    let mut options = WatchOptions::new().with_start_revision(args.rev.unwrap_or(0)); // 0: now
    if args.prefix {
        options = options.with_prefix();
    }
    // Not `client.watch`, which keeps etcd-client's 4 MiB limit per reply: one reply can replay many
    // big values (see MAX_RESPONSE). The watch exists once etcd answers `created`, not when `watch`
    // returns: only then is a write sure to be reported, so only then do we say "watching".
    let mut watch_client = client
        .watch_client()
        .max_decoding_message_size(MAX_RESPONSE);
    let opening = async {
        let mut stream = watch_client.watch(args.key.as_str(), Some(options)).await?;
        Ok::<_, etcd_client::Error>((stream.message().await?, stream))
    };
    let (created, stream) = tokio::time::timeout(args.connect.dial_timeout, opening)
        .await
        .with_context(|| format!("cannot open a watch on {what}: no answer in --dial-timeout"))?
        .with_context(|| format!("cannot open a watch on {what}"))?;
    let created = match created {
        Some(c) if !c.canceled() => c,
        Some(c) => bail!("etcd refused the watch on {what}: {}", c.cancel_reason()),
        None => bail!("etcd closed the stream before confirming the watch on {what}"),
    };
    let store = created.header().map_or(0, |h| h.revision());
    let from = args.rev.unwrap_or(store + 1); // "now" is after the store revision etcd answered at
    show::watching(args, from, store);
    Ok((stream, created.watch_id(), from))
}

/// Steps 4 and 5: open the watch again from `next` (the client reconnects by itself, a watch does not).
/// 4. The history was compacted (`lost` is `None`): `catch_up` reads the state with one GET, a snapshot
/// at one revision, then watches after it. 5. The stream broke: `reopen` watches from `next` again, with
/// growing pauses, so that the changes made meanwhile come first, none twice. `pause` (QuickBreaks)
/// makes a watch that keeps breaking at once wait longer each time.
async fn resume(
    client: &Client,
    args: &cli::Args,
    next: i64,
    lost: Option<String>,
    pause: Duration,
) -> Result<Opened> {
    tokio::time::sleep(pause).await;
    let mut watch = ResumingWatch::new(args.key.as_str(), args.prefix, Some(next));
    let timeout = args.connect.dial_timeout; // for each try
    let opened = match lost {
        None => watch.catch_up(client, timeout, show::not_back_yet).await?,
        Some(_) => watch.reopen(client, timeout, show::not_back_yet).await?,
    };
    show::resumed(args, &opened);
    Ok(opened)
}

/// Step 6: cancel the watch on the server, so etcd stops tracking it (Go cancels the watch's context).
/// `resuming_watch::cancel` waits, at most --dial-timeout, for etcd to say it dropped the watch.
async fn stop(mut stream: WatchStream, id: i64, why: &str, timeout: Duration) -> Result<()> {
    let confirmed = resuming_watch::cancel(&mut stream, id, timeout).await;
    show::stopped(why, id, confirmed)
}
