//! What `watch` says besides the changes themselves, kept apart from `main.rs`, which is about etcd.

use std::time::Duration;

use anyhow::Result;
use etcd_client::GetResponse;
use recipes::resuming_watch::Opened;

use crate::cli::Args;

/// The watched key as the messages name it: `name`, or `every key under /app/`.
pub fn what(args: &Args) -> String {
    match args.prefix {
        true => format!("every key under {}", args.key),
        false => args.key.clone(),
    }
}

/// Step 2: the watch exists (etcd confirmed it) and reports changes from revision `from`; the store is at
/// revision `store`.
pub fn watching(args: &Args, from: i64, store: i64) {
    let replay = if from <= store {
        " (replaying history first)"
    } else {
        ""
    };
    let until = match args.count {
        Some(n) => format!("stopping after {n} change(s) or Ctrl-C"),
        None => "Ctrl-C to stop".into(),
    };
    println!(
        "watching {} from revision {from}{replay}; {until}",
        what(args)
    );
    if from > store + 1 {
        // etcd accepts a start revision it has not reached yet: the watch stays quiet until then.
        println!(
            "   revision {from} is in the future: the store is at revision {store}, and changes from \
             revision {from} on will show as they happen"
        );
    }
}

/// Step 4: the changes a compaction took away, from `next` (the first not printed) to `compacted - 1`.
pub fn compacted(next: i64, compacted: i64) {
    println!(
        "revision {next} was compacted away (etcd keeps history from revision {compacted} on): the \
         changes from {next} to {} cannot be replayed",
        compacted - 1
    );
}

/// Step 4: what the watched keys hold, read with one GET instead of the lost changes.
fn state(args: &Args, state: &GetResponse) {
    let read_at = state.header().map_or(0, |h| h.revision());
    println!(
        "current state of {} at revision {read_at} (read with GET):",
        what(args)
    );
    if state.kvs().is_empty() {
        let nothing = match args.prefix {
            true => "no keys under it",
            false => "the key does not exist",
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
    println!("continuing from revision {}", read_at + 1);
}

/// Step 5: the stream broke, for this reason (`None`: step 4, a compaction, said already). When the last
/// watch broke before it delivered anything, the next one waits `pause` first.
pub fn lost(why: Option<&str>, pause: Duration) {
    let Some(why) = why else { return };
    println!("lost the connection to etcd ({why}); reconnecting");
    if !pause.is_zero() {
        println!(
            "   the last watch broke before it delivered anything; waiting {:.1}s before the next",
            pause.as_secs_f64()
        );
    }
}

/// Steps 4 and 5: the watch is open again; after a compaction, with the state read instead.
pub fn resumed(args: &Args, opened: &Opened) {
    match &opened.state {
        Some(read) => state(args, read),
        None => println!(
            "reconnected: resumed from revision {}",
            opened.start_revision
        ),
    }
}

/// Steps 4 and 5: a try to open the watch again failed; the next comes after `pause`.
pub fn not_back_yet(attempt: u32, _: &anyhow::Error, pause: Duration) {
    println!(
        "   etcd is not back yet (attempt {attempt}); trying again in {:.1}s",
        pause.as_secs_f64()
    );
}

/// A signal came while connecting (step 1): the run ends there, successfully.
pub fn stopped_connecting(signal: &str) -> Result<()> {
    println!("stopped ({signal}) while connecting; nothing was watched");
    Ok(())
}

/// A signal came while opening the watch again (steps 4 and 5): the run ends there, successfully.
pub fn stopped_reconnecting(signal: &str) -> Result<()> {
    println!("stopped ({signal}) while reconnecting; no watch was open to cancel");
    Ok(())
}

/// Step 6: a signal or --count stopped the watch `id`; `confirmed` if etcd said it dropped it.
pub fn stopped(why: &str, id: i64, confirmed: bool) -> Result<()> {
    if confirmed {
        println!("stopped ({why}): watch {id} canceled on the server");
    } else {
        println!("stopped ({why}): etcd did not confirm the cancel; it drops the watch when we disconnect");
    }
    Ok(())
}
