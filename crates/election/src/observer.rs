//! An observer: `cargo run -p election -- --observe`. It prints every change of leader of `--name` (a new
//! leader, or a new value proclaimed) until Ctrl-C, and observes again when the stream breaks.

use anyhow::{bail, Context, Result};
use election::{FIRST_PAUSE, MAX_PAUSE};
use etcd_client::Client;
use log::debug;
use recipes::shutdown::Shutdown;

pub async fn observe(mut client: Client, name: &str, shutdown: &mut Shutdown) -> Result<()> {
    // 1. observe says nothing while nobody leads: it sends the leader when there is one, then each new
    //    value and each new leader. So ask once, to tell the user why the screen stays blank.
    if election::current_leader(&mut client, name)
        .await
        .with_context(|| format!("ask who leads {name}"))?
        .is_none()
    {
        println!("nobody leads {name} yet");
    }
    println!("observing {name} (Ctrl-C to stop)");

    // 2. Observe (Go: `election.Observe(ctx)`): a stream of the leader's key-value, sent once for the
    //    current leader, again whenever the leader proclaims a new value, and when a new leader is
    //    elected. Nothing is sent when a leader resigns and nobody else stands.
    //
    //    The stream breaks with the connection (an etcd restart). Observe again, with growing pauses; the
    //    new stream starts with the current leader, which we skip if we printed it already: the key and
    //    its mod revision say whether anything changed.
    let mut last: Option<(Vec<u8>, i64)> = None;
    let mut pause = FIRST_PAUSE;
    let mut told = false;
    loop {
        let opened = tokio::select! {
            opened = client.observe(name) => opened,
            signal = shutdown.recv() => {
                println!("{signal}: stopped observing {name}");
                return Ok(());
            }
        };
        let broken = match opened {
            Ok(mut stream) => loop {
                let message = tokio::select! {
                    message = stream.message() => message,
                    signal = shutdown.recv() => {
                        println!("{signal}: stopped observing {name}");
                        return Ok(());
                    }
                };
                match message {
                    Ok(Some(resp)) => {
                        // A message means the stream works: the next break starts from a short pause again.
                        pause = FIRST_PAUSE;
                        told = false;
                        let Some(kv) = resp.kv() else { continue };
                        let seen = (kv.key().to_vec(), kv.mod_revision());
                        if last.as_ref() == Some(&seen) {
                            debug!("re-observed the leader we printed last: nothing changed");
                            continue;
                        }
                        // rev= is the leader key's create revision, the rev= its candidate printed
                        // when elected; a proclaim rewrites the key and keeps it.
                        let proclaimed = match &last {
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
                        last = Some(seen);
                    }
                    Ok(None) => break "etcd ended the stream".to_string(),
                    Err(e) if recipes::errors::is_transient(&e) => {
                        debug!("observe {name}: {e:?}");
                        break recipes::errors::explain(&e);
                    }
                    Err(e) => {
                        debug!("observe {name}: {e:?}");
                        bail!("observe {name}: {}", recipes::errors::explain(&e));
                    }
                }
            },
            Err(e) if recipes::errors::is_transient(&e) => {
                debug!("observe {name}: {e:?}");
                recipes::errors::explain(&e)
            }
            Err(e) => {
                debug!("observe {name}: {e:?}");
                bail!("observe {name}: {}", recipes::errors::explain(&e));
            }
        };
        if !told {
            println!("lost the observe stream ({broken}); observing {name} again");
            told = true;
        }
        debug!("observing {name} again in {pause:?}");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            signal = shutdown.recv() => {
                println!("{signal}: stopped observing {name}");
                return Ok(());
            }
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
