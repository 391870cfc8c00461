//! An observer: `cargo run -p election -- --observe`. It prints every change of leader of `--name` (a new
//! leader, or a new value proclaimed) until Ctrl-C, and observes again when the stream breaks.

use anyhow::{bail, Context, Result};
use election::current_leader;
use etcd_client::{Client, KeyValue};
use log::debug;
use recipes::errors::{explain, is_transient, Backoff};
use recipes::shutdown::Shutdown;

/// The leader printed last: its key and mod revision, which say whether a re-observed leader is news.
type Seen = Option<(Vec<u8>, i64)>;

pub async fn observe(mut client: Client, name: &str, shutdown: &mut Shutdown) -> Result<()> {
    // 1. observe says nothing while nobody leads: it sends the leader when there is one, then each new
    //    value and each new leader. So ask once (Go: `e.Leader(ctx)`), to tell the user why the screen
    //    stays blank.
    if current_leader(&mut client, name)
        .await
        .with_context(|| format!("ask who leads {name}"))?
        .is_none()
    {
        println!("nobody leads {name} yet");
    }
    println!("observing {name} (Ctrl-C to stop)");

    // 2. Observe. The stream breaks with the connection (an etcd restart): observe again, with growing
    //    pauses. A message means the stream works, so the pauses start short again after one, and the
    //    user is told once per outage.
    let (mut last, mut backoff) = (None, Backoff::default());
    loop {
        let broken = match shutdown
            .unless_stopped(follow(&mut client, name, &mut last, &mut backoff))
            .await
        {
            Ok(broken) => broken?,
            Err(signal) => {
                println!("{signal}: stopped observing {name}");
                return Ok(());
            }
        };
        if backoff.failures() == 0 {
            println!("lost the observe stream ({broken}); observing {name} again");
        }
        debug!("observing {name} again");
        if let Err(signal) = shutdown.unless_stopped(backoff.wait()).await {
            println!("{signal}: stopped observing {name}");
            return Ok(());
        }
    }
}

/// Follows one observe stream until it breaks, printing each change: `Ok` with why it broke if observing
/// again can help, an error if not. The stream (Go: `e.Observe(ctx)`) sends the leader's key-value once for
/// the current leader, again whenever the leader proclaims a new value, and when a new leader is elected.
/// Nothing is sent when a leader resigns and nobody else stands. A new stream starts with the current
/// leader, which is skipped if it was printed already.
async fn follow(
    client: &mut Client,
    name: &str,
    last: &mut Seen,
    backoff: &mut Backoff,
) -> Result<String> {
    // Go: ch := e.Observe(ctx)
    let mut stream = match client.observe(name).await {
        Ok(stream) => stream,
        Err(e) => return again_unless_permanent(name, e),
    };
    loop {
        match stream.message().await {
            Ok(Some(resp)) => {
                backoff.reset();
                if let Some(kv) = resp.kv() {
                    print_change(name, kv, last);
                }
            }
            Ok(None) => return Ok("etcd ended the stream".to_string()),
            Err(e) => return again_unless_permanent(name, e),
        }
    }
}

/// Prints the leader `kv` unless it is the one printed last (same key, same mod revision).
fn print_change(name: &str, kv: &KeyValue, last: &mut Seen) {
    let seen = (kv.key().to_vec(), kv.mod_revision());
    if last.as_ref() == Some(&seen) {
        debug!("re-observed the leader we printed last: nothing changed");
        return;
    }
    // rev= is the leader key's create revision, the rev= its candidate printed when elected; a proclaim
    // rewrites the key and keeps it.
    let proclaimed = match last {
        Some((key, _)) if key.as_slice() == kv.key() => {
            format!(", proclaimed at revision {}", kv.mod_revision())
        }
        _ => String::new(),
    };
    println!(
        "leader of {name} is now {} (rev={}, key {}{proclaimed})",
        String::from_utf8_lossy(kv.value()),
        kv.create_revision(),
        String::from_utf8_lossy(kv.key())
    );
    *last = Some(seen);
}

/// A broken observe stream: why, if observing again may help; the error, if it cannot.
fn again_unless_permanent(name: &str, e: etcd_client::Error) -> Result<String> {
    debug!("observe {name}: {e:?}");
    if !is_transient(&e) {
        bail!("observe {name}: {}", explain(&e));
    }
    Ok(explain(&e))
}
