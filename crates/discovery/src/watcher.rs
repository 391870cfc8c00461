//! `discovery watch`: the client's side. It reads the instances of a service with one GET, watches their
//! prefix from that read's revision + 1, and prints the whole set after every change, until Ctrl-C or
//! SIGTERM. Each `etcd-client` call is made here, at the step that explains it. Run it with:
//!
//! ```text
//! cargo run -p discovery -- watch --service api
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use discovery::InstanceWatch;
use etcd_client::{Client, GetOptions, WatchOptions, WatchStream};
use log::debug;
use recipes::errors::{explain, is_transient};
use recipes::resuming_watch::{Opened, ResumingWatch, MAX_RESPONSE};
use recipes::shutdown::Shutdown;

use crate::cli::{self, WatchArgs};

/// `instances of api: [a=127.0.0.1:8001, b=127.0.0.1:8002]`: the set, sorted by ID (a `BTreeMap` is).
pub fn instances_line(service: &str, instances: &BTreeMap<String, String>) -> String {
    let shown: Vec<String> = instances
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    format!("instances of {service}: [{}]", shown.join(", "))
}

pub async fn run(
    client: Client,
    args: &cli::Args,
    flags: &WatchArgs,
    prefix: &str,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let service = flags.service.as_str();
    // The trailing `/` matters: without it, the service `api` would also see the instances of `api2`.
    let dir = format!("{prefix}/{service}/");
    // Every call to etcd below is bounded by this, so a dead or stuck etcd cannot hang the watcher.
    let timeout = args.connect.dial_timeout;
    // The set, and the revision it is as of: `InstanceWatch` (src/lib.rs) keeps both and applies each
    // change; steps 1 and 2 make its first read and watch here, in the open.
    let mut instances = InstanceWatch::new(dir.as_str());

    // 1. Read the instances there are now: one GET of every key under the prefix. A GET is a snapshot of
    //    the whole store at one revision, given in the reply's header. Through a kv client whose reply
    //    limit is raised to MAX_RESPONSE (recipes::resuming_watch): `client.get` keeps etcd-client's
    //    4 MiB, and sixty instances with 100 kB values are more than that.
    // Go: resp, err := cli.Get(ctx, dir, clientv3.WithPrefix())
    let mut kv_client = client.kv_client().max_decoding_message_size(MAX_RESPONSE);
    let got = tokio::time::timeout(
        timeout,
        kv_client.get(dir.as_str(), Some(GetOptions::new().with_prefix())),
    )
    .await
    .with_context(|| format!("etcd did not answer within {timeout:?}"))?
    .with_context(|| format!("read the instances under {dir}"))?;
    let read_at = got.header().map_or(0, |h| h.revision());
    instances.load(&got);
    println!(
        "1. read {dir} at revision {read_at}: {} instance(s)",
        got.count()
    );
    println!("{}", instances_line(service, instances.instances()));

    // 2. Watch the prefix from the read's revision + 1. A watch "from now" would open a little later
    //    than the read, and an instance that registered in between would be in neither. With an explicit
    //    start revision, etcd replays every change after the read, however late the watch opens.
    let from = read_at + 1;
    let (stream, watch_id) = open(&client, &dir, from, timeout).await?;
    println!(
        "2. watching {dir} from revision {from}, right after the read, so no change in between is missed; \
         Ctrl-C to stop"
    );
    //    From here on a `ResumingWatch` (recipes) knows where the watch is, to open it again from there.
    let resuming = ResumingWatch::new(dir.as_str(), true, Some(from)).with_attempt_timeout(timeout);
    let watching = Watching {
        service,
        dir: &dir,
        timeout,
        instances,
        resuming,
    };
    watching.follow(&client, stream, watch_id, shutdown).await
}

/// Step 2's watch: through a watch client whose limit is raised too, since a resume after a restart
/// replays every change made meanwhile, up to 1,000 revisions in one response.
async fn open(
    client: &Client,
    dir: &str,
    from: i64,
    timeout: Duration,
) -> Result<(WatchStream, i64)> {
    // Go: wch := cli.Watch(ctx, dir, clientv3.WithPrefix(), clientv3.WithRev(from))
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut watch_client = client
        .watch_client()
        .max_decoding_message_size(MAX_RESPONSE);
    let mut stream = tokio::time::timeout(timeout, watch_client.watch(dir, Some(options)))
        .await
        .with_context(|| format!("etcd did not answer within {timeout:?}"))?
        .with_context(|| format!("watch {dir}"))?;
    // `watch` returns once the stream is open; the watch exists when etcd answers `created` on it.
    let created = tokio::time::timeout(timeout, stream.message())
        .await
        .with_context(|| format!("etcd did not confirm the watch within {timeout:?}"))?
        .with_context(|| format!("watch {dir}"))?
        .ok_or_else(|| anyhow!("etcd closed the stream before confirming the watch on {dir}"))?;
    if created.canceled() {
        bail!(
            "etcd refused the watch on {dir}: {}",
            created.cancel_reason()
        );
    }
    Ok((stream, created.watch_id()))
}

/// The watcher after step 2: the set, and where the watch is.
struct Watching<'a> {
    service: &'a str,
    dir: &'a str,
    timeout: Duration,
    instances: InstanceWatch,
    resuming: ResumingWatch,
}

/// What the watcher goes on with after one message.
enum Next {
    /// The same watch.
    Same,
    /// A new watch, opened again after the old one broke or lost its history.
    Reopened(Box<Opened>),
    /// A signal came while the watch was being opened again: no watch is open to cancel.
    Stopped,
}

impl Watching<'_> {
    /// Steps 3 and 4, until Ctrl-C or SIGTERM (step 5).
    async fn follow(
        mut self,
        client: &Client,
        mut stream: WatchStream,
        mut watch_id: i64,
        shutdown: &mut Shutdown,
    ) -> Result<()> {
        let mut shown = self.instances.instances().clone();
        loop {
            // 3. Apply each change to the set, and print the whole set when it changed. One message can
            //    carry several events (all the changes of one transaction): the set is printed once.
            let message = tokio::select! {
                signal = shutdown.recv() => return stop(stream, watch_id, signal, self.timeout).await,
                message = stream.message() => message,
            };
            let next = match message {
                Ok(Some(response)) if !response.canceled() => {
                    self.instances.apply(&response);
                    self.resuming.advance(&response);
                    Next::Same
                }
                Ok(Some(response)) if response.compact_revision() > 0 => {
                    self.read_again(client, shutdown).await?
                }
                Ok(Some(response)) => bail!(
                    "etcd canceled the watch on {}: {}",
                    self.dir,
                    response.cancel_reason()
                ),
                Ok(None) => {
                    self.reconnect(client, shutdown, "etcd closed the stream")
                        .await?
                }
                Err(e) if !is_transient(&e) => {
                    return Err(anyhow!(e).context(format!("watch {}", self.dir)))
                }
                Err(e) => self.reconnect(client, shutdown, &explain(&e)).await?,
            };
            if self.instances.instances() != &shown {
                shown = self.instances.instances().clone();
                println!("{}", instances_line(self.service, &shown));
            }
            match next {
                Next::Same => {}
                Next::Reopened(opened) => (stream, watch_id) = (opened.stream, opened.watch_id),
                Next::Stopped => return Ok(()),
            }
        }
    }

    /// 4a. etcd canceled the watch because the revision to resume from was compacted away: those changes
    ///     cannot be replayed. `ResumingWatch::catch_up` reads the set again, and watches from right
    ///     after that read.
    async fn read_again(&mut self, client: &Client, shutdown: &mut Shutdown) -> Result<Next> {
        println!(
            "revision {} was compacted away; reading {} again",
            self.instances.next_revision().unwrap_or(0),
            self.dir
        );
        let catch_up = self.resuming.catch_up(client, self.timeout, retrying);
        let opened = match shutdown.unless_stopped(catch_up).await {
            Ok(opened) => opened?,
            Err(signal) => {
                println!("stopped ({signal}) while reading again; no watch was open to cancel");
                return Ok(Next::Stopped);
            }
        };
        if let Some(state) = &opened.state {
            self.instances.load(state);
        }
        Ok(Next::Reopened(Box::new(opened)))
    }

    /// 4b. The stream broke: etcd restarted, the network dropped. The client connects again by itself
    ///     once etcd is back, but a watch stream is not re-opened for us. `ResumingWatch::reopen` opens a
    ///     new one from the revision after the last change applied, with growing pauses, each try bounded
    ///     by --dial-timeout; changes made meanwhile come first, none twice.
    async fn reconnect(
        &mut self,
        client: &Client,
        shutdown: &mut Shutdown,
        lost: &str,
    ) -> Result<Next> {
        println!("lost the connection to etcd ({lost}); reconnecting");
        let reopen = self.resuming.reopen(client, self.timeout, retrying);
        let opened = match shutdown.unless_stopped(reopen).await {
            Ok(opened) => opened?,
            Err(signal) => {
                println!("stopped ({signal}) while reconnecting; no watch was open to cancel");
                return Ok(Next::Stopped);
            }
        };
        println!(
            "reconnected: resumed from revision {}",
            opened.start_revision
        );
        Ok(Next::Reopened(Box::new(opened)))
    }
}

/// Told of each failed attempt to open the watch again, before the pause that follows it.
fn retrying(attempt: u32, error: &anyhow::Error, pause: Duration) {
    debug!("attempt {attempt}: {error:#}");
    println!(
        "   etcd is not back yet (attempt {attempt}); trying again in {:.1}s",
        pause.as_secs_f64()
    );
}

/// Step 5: cancel the watch on the server, so etcd stops tracking it, then exit 0. `resuming_watch::cancel`
/// waits, at most `timeout`, for etcd's `canceled` answer: an unconfirmed cancel is harmless, as etcd
/// drops a watch when its stream closes.
async fn stop(mut stream: WatchStream, watch_id: i64, why: &str, timeout: Duration) -> Result<()> {
    if recipes::resuming_watch::cancel(&mut stream, watch_id, timeout).await {
        println!("stopped ({why}): watch {watch_id} canceled on the server");
    } else {
        println!("stopped ({why}): etcd did not confirm the cancel; it drops the watch when we disconnect");
    }
    Ok(())
}
