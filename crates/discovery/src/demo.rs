//! What the demo in `main.rs` needs besides its lessons: stopping on Ctrl-C with everything it registered
//! deregistered, its safety check, and its watcher's output.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{Client, GetResponse};
use recipes::errors::one_line;
use recipes::shutdown::{ExitBudget, Shutdown};
use tokio::time::timeout;

use crate::watcher::instances_line;
use crate::{cli, Demo, DEMO, DEMO_TIMEOUT, DEMO_TTL};
use discovery::InstanceWatch;

impl Demo {
    pub fn new(client: Client, prefix: &str, args: &cli::Args) -> Demo {
        Demo {
            client,
            dir: format!("{prefix}/{DEMO}/"),
            timeout: args.connect.dial_timeout,
            registered: Vec::new(),
        }
    }

    /// Runs the steps until they end or Ctrl-C / SIGTERM, then deregisters what is still registered
    /// (after a signal or a failed step). The revokes share one --dial-timeout (`ExitBudget`), so
    /// stopping never hangs on a silent etcd.
    pub async fn run(mut self, shutdown: &mut Shutdown) -> Result<()> {
        let steps = match shutdown.unless_stopped(self.steps()).await {
            Ok(steps) => steps,
            Err(signal) => {
                println!("{signal}: stopping the demo early");
                Ok(())
            }
        };
        let mut budget = ExitBudget::new(self.timeout);
        let mut cleanup = Ok(());
        for (key, session) in std::mem::take(&mut self.registered) {
            match self.deregister(&key, session, &mut budget).await {
                Ok(()) => println!("   deregistered {key} on the way out"),
                Err(e) => cleanup = Err(e),
            }
        }
        steps.and(cleanup)
    }

    /// Waits (at most DEMO_TIMEOUT) for the watcher to report the set after the change made to `id`,
    /// and prints it.
    pub async fn print_next_set(&self, watcher: &mut InstanceWatch, id: &str) -> Result<()> {
        let changed = watcher.changed(&self.client, self.timeout, retrying);
        let set = timeout(DEMO_TIMEOUT, changed).await;
        let set = set.with_context(|| format!("the watcher did not see {id} change in time"))??;
        println!("   watcher: {}", instances_line(DEMO, set));
        Ok(())
    }
}

/// The demo prints and deregisters what is under its directory: it must hold nobody else's keys.
pub fn refuse_keys_not_ours(got: &GetResponse, dir: &str) -> Result<()> {
    let keys: Vec<_> = got
        .kvs()
        .iter()
        .take(3)
        .map(|kv| String::from_utf8_lossy(kv.key()))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    bail!(
        "{dir} already holds {} key(s) ({}{}), which this demo did not write; choose another --prefix (or, \
         if they are left from a demo killed less than {DEMO_TTL}s ago, wait for their leases to run out)",
        got.count(),
        keys.join(", "),
        if got.count() > 3 { ", ..." } else { "" }
    );
}

/// Told of each failed attempt to open the watch (etcd restarting, say), before the pause after it.
pub fn retrying(attempt: u32, error: &anyhow::Error, pause: Duration) {
    let (why, pause) = (one_line(error), pause.as_secs_f64());
    println!(
        "   watcher: no answer from etcd (attempt {attempt}: {why}); trying again in {pause:.1}s"
    );
}
