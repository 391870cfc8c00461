//! # discovery: service registration and discovery
//!
//! The use of etcd the article's series is about: instances of a service register themselves, and their
//! clients find them, and learn at once when one comes or goes.
//!
//! - An instance writes the key `<prefix>/<service>/<id>` (`/services/api/a`) with its address as the
//!   value, attached to a lease it keeps alive. It writes it only if the key is free, in one transaction,
//!   so two instances that picked the same ID cannot overwrite each other. Ctrl-C or SIGTERM revoke the
//!   lease, which deletes the key at once; if the instance is killed, the renewals stop and etcd deletes
//!   the key by itself when the TTL runs out.
//! - A client reads every key under `<prefix>/<service>/` with one GET, then watches that prefix from the
//!   read's revision + 1, so that no registration made between the read and the watch is missed, and
//!   prints the whole set after every change. When etcd restarts, it watches again from the revision after
//!   the last change it saw.
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p discovery                                              # the demo, in one process
//! cargo run -p discovery -- watch --service api                       # terminal 1: the client's view
//! cargo run -p discovery -- register --service api --id a --addr 127.0.0.1:8001   # terminal 2
//! cargo run -p discovery -- register --service api --id b --addr 127.0.0.1:8002   # terminal 3
//! RUST_LOG=debug cargo run -p discovery -- register --service api --id a --addr 127.0.0.1:8001
//! ```
//!
//! Try next: Ctrl-C one `register` and see the watcher drop it at once; `kill -9` the other and see it
//! dropped about `--ttl` seconds later; start a second `--id a` while the first runs, and see it refused.
//! In a service, `register` and `InstanceWatch` in `src/lib.rs` pack the same steps.

mod cli;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cli::{Command, RegisterArgs, WatchArgs};
use discovery::{InstanceWatch, KeptLease, Registered, Registration, Renewal, MAX_RESPONSE};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchStream,
};
use etcd_connect::{one_line, Shutdown};
use log::debug;
use tokio::time::Instant;

/// The service the demo registers, and its instances.
const DEMO_SERVICE: &str = "demo";
const DEMO_INSTANCES: [(&str, &str); 2] = [("a", "127.0.0.1:8001"), ("b", "127.0.0.1:8002")];
/// The TTL of the demo's leases: short, so that the entries of a demo killed halfway go quickly.
const DEMO_TTL: i64 = 5;
/// How long the demo waits for something etcd should do at once (report a change to the watcher).
const DEMO_TIMEOUT: Duration = Duration::from_secs(10);

// The demo runs two lease renewals in background tasks while the main task registers and watches, and
// the subcommands wait on one stream at a time: the single-threaded runtime runs all of it.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    etcd_connect::report(run(cli::Args::parse_anywhere()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    // Listen for Ctrl-C / SIGTERM before anything can block, so a signal always leads to a clean exit.
    let mut shutdown = Shutdown::listen()?;

    // 0. Connect. Underneath, `etcd_connect::connect` calls `Client::connect(endpoints, options)` and then
    //    asks the server for its `status()` within --dial-timeout, because `Client::connect` is lazy: it
    //    succeeds even when nothing listens (see crates/etcd-connect/src/lib.rs). Ctrl-C stops it at once:
    //    nothing is registered yet.
    let client = tokio::select! {
        client = etcd_connect::connect(&args.connect) => client?,
        signal = shutdown.recv() => {
            println!("{signal}: stopped before connecting; nothing was registered");
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // `--prefix /services/` and `--prefix /services` mean the same: keys are `<prefix>/<service>/<id>`.
    let prefix = args.prefix.trim_end_matches('/');
    match &args.command {
        None => demo(client, &args, prefix, &mut shutdown).await,
        Some(Command::Register(flags)) => {
            register(client, &args, flags, prefix, &mut shutdown).await
        }
        Some(Command::Watch(flags)) => watch(client, &args, flags, prefix, &mut shutdown).await,
    }
}

/// `instances of api: [a=127.0.0.1:8001, b=127.0.0.1:8002]`: the set, sorted by ID (a `BTreeMap` is).
fn instances_line(service: &str, instances: &BTreeMap<String, String>) -> String {
    let shown: Vec<String> = instances
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    format!("instances of {service}: [{}]", shown.join(", "))
}

// =========================================================================================================
// The demo: two instances and a watcher in one process.
// =========================================================================================================

/// Registers the instances a and b of the service `demo`, each on a lease of its own (two processes would
/// have one each), while a watcher prints the set after each change; then deregisters a, then b.
///
/// It uses the packaged forms of the two subcommands below, from `src/lib.rs`, which is what a service
/// would copy: `discovery::register` makes the calls of `register`'s steps 1 to 3 and renews in a
/// background task; `InstanceWatch` makes the calls of `watch`'s steps 1 to 4.
async fn demo(
    client: Client,
    args: &cli::Args,
    prefix: &str,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let dir = format!("{prefix}/{DEMO_SERVICE}/");
    // Every instance registered so far: whatever happens below, each is deregistered on the way out.
    let mut registered = Vec::new();
    let steps = tokio::select! {
        result = demo_steps(&client, args, &dir, &mut registered) => result,
        signal = shutdown.recv() => {
            println!("{signal}: stopping the demo early");
            Ok(())
        }
    };
    // Deregister what is still registered (after Ctrl-C or a failed step): revoking a lease deletes its
    // key. All of these calls together get one --dial-timeout, so stopping never hangs on a silent etcd.
    let until = Instant::now() + args.connect.dial_timeout;
    let mut cleanup = Ok(());
    for registration in registered.drain(..) {
        let key = registration.key().to_string();
        match registration
            .deregister(&client, until - Instant::now())
            .await
        {
            Ok(()) => println!("   deregistered {key} on the way out"),
            Err(e) => cleanup = Err(e),
        }
    }
    steps?;
    cleanup
}

async fn demo_steps(
    client: &Client,
    args: &cli::Args,
    dir: &str,
    registered: &mut Vec<Registration>,
) -> Result<()> {
    let timeout = args.connect.dial_timeout;
    let retrying = |attempt: u32, error: &anyhow::Error, pause: Duration| {
        println!(
            "   watcher: no answer from etcd (attempt {attempt}: {}); trying again in {:.1}s",
            one_line(error),
            pause.as_secs_f64()
        )
    };

    // The watcher prints every instance under `dir`, and the demo deregisters what it registered there.
    // A learner's own instances would show up in its lines, so refuse a directory that holds keys.
    let existing = client
        .clone()
        .get(
            dir,
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(3),
            ),
        )
        .await
        .with_context(|| format!("check that {dir} is empty"))?;
    if existing.count() > 0 {
        let keys: Vec<_> = existing
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()))
            .collect();
        bail!(
            "{dir} already holds {} key(s) ({}{}), which this demo did not write; choose another --prefix \
             (or, if they are left from a demo killed less than {DEMO_TTL}s ago, wait for their leases to \
             run out)",
            existing.count(),
            keys.join(", "),
            if existing.count() > keys.len() as i64 { ", ..." } else { "" }
        );
    }

    // 1. The watcher's first call reads the set with one GET (empty so far) and opens a watch from that
    //    read's revision + 1; every later call returns the set after the next change.
    let mut watcher = InstanceWatch::new(dir);
    let set = tokio::time::timeout(DEMO_TIMEOUT, watcher.changed(client, timeout, retrying))
        .await
        .context("the watcher did not start in time")??;
    let line = instances_line(DEMO_SERVICE, set);
    let from = watcher.next_revision().unwrap_or(0);
    println!(
        "1. watcher: read {dir} at revision {}, and watches it from revision {from}",
        from - 1
    );
    println!("   watcher: {line}");

    // 2, 3. Register a, then b: each on its own lease, renewed in the background, written only if the key
    //       is free. After each, the watcher reports the new set.
    for (step, (id, addr)) in (2..).zip(DEMO_INSTANCES) {
        let key = format!("{dir}{id}");
        let registration = match discovery::register(client, &key, addr, DEMO_TTL).await? {
            Registered::Now(registration) => registration,
            Registered::Taken(holder) => bail!(
                "{key} was taken by {} while the demo ran; run it again with another --prefix",
                holder.addr
            ),
        };
        println!(
            "{step}. registered {id} = {addr} as {key} on lease {:016x} (ttl {}s, renewed every {:.1}s)",
            registration.lease_id(),
            registration.ttl(),
            registration.ttl() as f64 / 3.0
        );
        registered.push(registration);
        let set = tokio::time::timeout(DEMO_TIMEOUT, watcher.changed(client, timeout, retrying))
            .await
            .with_context(|| format!("the watcher did not see {id} within {DEMO_TIMEOUT:?}"))??;
        println!("   watcher: {}", instances_line(DEMO_SERVICE, set));
    }

    // 4. A second instance that picked the ID `a` is refused: the key exists, so the transaction writes
    //    nothing and reads the holder instead. Nothing changed, so the watcher has nothing to report.
    let key_a = format!("{dir}a");
    match discovery::register(client, &key_a, "127.0.0.1:8009", DEMO_TTL).await? {
        Registered::Taken(holder) => println!(
            "4. a second a at 127.0.0.1:8009 was refused: {} is held by {} on lease {:016x}, and stays as it was",
            holder.key, holder.addr, holder.lease
        ),
        Registered::Now(registration) => {
            registered.push(registration);
            bail!("a second registration of {key_a} was accepted: the put-if-absent transaction failed");
        }
    }

    // 5, 6. Deregister a, then b: revoking a lease deletes the keys attached to it, at once, and the
    //       watcher sees each DELETE. (A killed instance's key would go only when its TTL runs out.)
    for (step, (id, _)) in (5..).zip(DEMO_INSTANCES) {
        let registration = registered.remove(0);
        let lease = registration.lease_id();
        let key = registration.key().to_string();
        registration.deregister(client, timeout).await?;
        println!(
            "{step}. deregistered {id}: revoked lease {lease:016x}, so etcd deleted {key} at once"
        );
        let set = tokio::time::timeout(DEMO_TIMEOUT, watcher.changed(client, timeout, retrying))
            .await
            .with_context(|| {
                format!("the watcher did not see {id} go within {DEMO_TIMEOUT:?}")
            })??;
        println!("   watcher: {}", instances_line(DEMO_SERVICE, set));
    }

    // Say what is left, read back from etcd rather than assumed.
    let left = client
        .clone()
        .get(dir, Some(GetOptions::new().with_prefix().with_count_only()))
        .await
        .with_context(|| format!("count the keys under {dir}"))?;
    println!(
        "done: {} key(s) left under {dir}, and both leases are revoked",
        left.count()
    );
    Ok(())
}

// =========================================================================================================
// `discovery register`: one instance, registered until Ctrl-C or SIGTERM.
// =========================================================================================================

async fn register(
    mut client: Client,
    args: &cli::Args,
    flags: &RegisterArgs,
    prefix: &str,
    shutdown: &mut Shutdown,
) -> Result<()> {
    let key = format!("{prefix}/{}/{}", flags.service, flags.id);
    let (name, addr) = (format!("{}/{}", flags.service, flags.id), &flags.addr);
    let timeout = args.connect.dial_timeout;

    // 1. Grant a lease: the key will live as long as we renew it, and TTL seconds more. etcd may grant
    //    more than we asked (it raises very short TTLs), so the rest uses the TTL from the reply.
    let granted = tokio::select! {
        granted = client.lease_grant(flags.ttl, None) => {
            granted.with_context(|| format!("grant a lease of {}s", flags.ttl))?
        }
        signal = shutdown.recv() => {
            println!("{signal}: stopped before registering; nothing was written");
            return Ok(());
        }
    };
    let (lease, ttl) = (granted.id(), granted.ttl());
    // etcdctl prints lease IDs as 16 hex digits: the same form can be pasted into `etcdctl lease ...`.
    println!("1. granted lease {lease:016x} with a TTL of {ttl}s");

    // 2. Write the key only if it is free: a transaction whose guard compares the key's create revision
    //    with 0, the create revision of a key that does not exist. A plain PUT would take over the key of
    //    another instance that picked the same ID (or of this one, killed less than a TTL ago), and its
    //    lease would no longer cover it. If the key exists, the same transaction reads it, to say who
    //    holds it.
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            addr.as_str(),
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let written = tokio::select! {
        written = client.txn(txn) => written,
        signal = shutdown.recv() => {
            // Revoking deletes the key too, in case the transaction went through before we stopped.
            let _ = tokio::time::timeout(timeout, client.lease_revoke(lease)).await;
            println!("{signal}: stopped while registering; revoked lease {lease:016x}, so nothing stays");
            return Ok(());
        }
    };
    let written = match written {
        Ok(written) => written,
        Err(e) => {
            // Nobody will renew the lease; revoking it now spares etcd a TTL of keeping it.
            let _ = tokio::time::timeout(timeout, client.lease_revoke(lease)).await;
            return Err(anyhow!(e).context(format!("register {key}")));
        }
    };
    if !written.succeeded() {
        let _ = tokio::time::timeout(timeout, client.lease_revoke(lease)).await;
        let holder = written
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(got) => got.kvs().first().cloned(),
                _ => None,
            })
            .context("etcd said the key exists but returned nothing for it")?;
        //  How long the holder's entry stays if nobody renews it: its lease's remaining TTL.
        let stays = match holder.lease() {
            0 => "on no lease, so it stays until someone deletes it".to_string(),
            other => match tokio::time::timeout(timeout, client.lease_time_to_live(other, None)).await {
                Ok(Ok(left)) if left.ttl() >= 0 => format!(
                    "on lease {other:016x}, {}s left of its {}s TTL: if that instance was killed, its \
                     entry goes when that runs out",
                    left.ttl(),
                    left.granted_ttl()
                ),
                _ => format!("on lease {other:016x}"),
            },
        };
        bail!(
            "{name} is already registered by another instance: {key} = {} (created at revision {}, {stays}); \
             stop that instance or choose another --id",
            String::from_utf8_lossy(holder.value()),
            holder.create_revision()
        );
    }
    println!(
        "2. registered {name}: {key} = {addr} on lease {lease:016x} at revision {} (written only because \
         the key was free)",
        written.header().map_or(0, |h| h.revision())
    );

    // 3. Keep the lease alive. etcd-client hands back the two ends of a keep-alive stream: `keep_alive()`
    //    sends one renewal, `message()` reads one answer; nothing renews unless we send it. Opening the
    //    stream renews once. `KeptLease` (src/lib.rs, the keepalive topic's) renews every TTL/3 and
    //    re-opens the stream when it breaks, while the lease can still be alive.
    let (keeper, answers) = match client.lease_keep_alive(lease).await {
        Ok(ends) => ends,
        Err(e) => {
            let _ = tokio::time::timeout(timeout, client.lease_revoke(lease)).await;
            return Err(
                anyhow!(e).context(format!("open a keep-alive stream for lease {lease:016x}"))
            );
        }
    };
    let mut kept = KeptLease::new(lease, ttl, keeper, answers);
    println!(
        "3. keeping {name} registered: renewing lease {lease:016x} every {:.1?}; Ctrl-C or SIGTERM deregisters it",
        kept.renew_every()
    );

    // 4. Renew until stopped. Renewals print only with RUST_LOG=debug; what a user must know is printed.
    loop {
        let renewal = tokio::select! {
            signal = shutdown.recv() => return deregister(&mut client, &key, &name, &kept, signal, timeout).await,
            renewal = kept.renew_when_due() => renewal,
        };
        match renewal {
            Ok(Renewal::Alive { ttl }) => debug!("lease {lease:016x} renewed: {ttl}s again"),
            Ok(Renewal::Gone) => {
                // etcd's TTL 0 does not say why, nor what became of the key: read it back.
                let why = kept.why_gone();
                let now = match tokio::time::timeout(timeout, client.get(key.as_str(), None)).await
                {
                    Ok(Ok(got)) if got.kvs().is_empty() => format!("etcd deleted {key} with it"),
                    Ok(Ok(_)) => {
                        format!("{key} is still there, written by another client on another lease")
                    }
                    _ => format!("etcd deleted {key} with it, if it was still on it"),
                };
                bail!("{name} is no longer registered: lease {lease:016x} is gone ({why}); {now}");
            }
            Err(broken) => {
                println!(
                    "   keep-alive stream broke ({}); re-opening it before the TTL runs out",
                    one_line(&broken)
                );
                tokio::select! {
                    signal = shutdown.recv() => return deregister(&mut client, &key, &name, &kept, signal, timeout).await,
                    reopened = kept.reopen(&mut client) => reopened?,
                }
                println!("   keep-alive stream re-opened; lease {lease:016x} renewed, {name} still registered");
            }
        }
    }
}

/// 5. Deregister on Ctrl-C or SIGTERM: revoke the lease, so etcd deletes the key now, and clients stop
///    calling an instance that is going away, instead of up to a TTL later.
///
///    Say what it really did: ask etcd which keys the lease holds first (`with_keys`), because another
///    client may have overwritten ours, which takes it off the lease (a revoke then leaves it alone). Both
///    calls share one --dial-timeout, so stopping never hangs on an etcd that stopped answering; the key
///    then goes when the TTL runs out, since nobody renews it any more.
async fn deregister(
    client: &mut Client,
    key: &str,
    name: &str,
    kept: &KeptLease,
    why: &str,
    timeout: Duration,
) -> Result<()> {
    let (lease, ttl) = (kept.id, kept.ttl);
    let until = Instant::now() + timeout;
    let no_answer = || {
        anyhow!(
            "{why}: etcd did not answer within {timeout:?}, so lease {lease:016x} may not be revoked; {key} \
             goes when its TTL of {ttl}s runs out, since nobody renews it now"
        )
    };
    let options = LeaseTimeToLiveOptions::new().with_keys();
    let attached =
        match tokio::time::timeout_at(until, client.lease_time_to_live(lease, Some(options))).await
        {
            Ok(Ok(reply)) => Some(reply.keys().iter().any(|k| k.as_slice() == key.as_bytes())),
            Ok(Err(e)) => {
                debug!("lease_time_to_live({lease:016x}) failed: {e}");
                None
            }
            Err(_) => return Err(no_answer()),
        };
    tokio::time::timeout_at(until, client.lease_revoke(lease))
        .await
        .map_err(|_| no_answer())?
        .with_context(|| format!("{why}: revoke lease {lease:016x}"))?;
    match attached {
        Some(true) | None => println!(
            "{why}: deregistered {name}: revoked lease {lease:016x}, so etcd deleted {key} at once"
        ),
        Some(false) => println!(
            "{why}: revoked lease {lease:016x}; {key} was no longer on it (deleted or overwritten by another \
             client), so the revoke deleted nothing"
        ),
    }
    Ok(())
}

// =========================================================================================================
// `discovery watch`: the client's side.
// =========================================================================================================

async fn watch(
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
    // The set, and the revision it is as of. `InstanceWatch` (src/lib.rs) keeps both, applies each change,
    // and re-opens the watch in step 4; steps 1 and 2 make its first read and watch here, in the open.
    let mut instances = InstanceWatch::new(dir.as_str());

    // 1. Read the instances there are now: one GET of every key under the prefix. A GET is a snapshot of
    //    the whole store at one revision, given in the reply's header. Through a kv client whose reply
    //    limit is raised to MAX_RESPONSE (src/lib.rs): `client.get` keeps etcd-client's 4 MiB, and sixty
    //    instances with 100 kB values are more than that.
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
    let mut shown = instances.instances().clone();
    println!("{}", instances_line(service, &shown));

    // 2. Watch the prefix from the read's revision + 1. A watch "from now" would open a little later
    //    than the read, and an instance that registered in between would be in neither. With an explicit
    //    start revision, etcd replays every change after the read, however late the watch opens.
    let from = read_at + 1;
    //    The watch too gets the raised limit: a resume after a restart replays every change made
    //    meanwhile, up to 1,000 revisions in one response.
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut watch_client = client
        .watch_client()
        .max_decoding_message_size(MAX_RESPONSE);
    let mut stream = tokio::time::timeout(timeout, watch_client.watch(dir.as_str(), Some(options)))
        .await
        .with_context(|| format!("etcd did not answer within {timeout:?}"))?
        .with_context(|| format!("watch {dir}"))?;
    //    `watch` returns once the stream is open; the watch exists when etcd answers `created` on it.
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
    let mut watch_id = created.watch_id();
    println!(
        "2. watching {dir} from revision {from}, right after the read, so no change in between is missed; \
         Ctrl-C to stop"
    );

    let retrying = |attempt: u32, error: &anyhow::Error, pause: Duration| {
        debug!("attempt {attempt}: {error:#}");
        println!(
            "   etcd is not back yet (attempt {attempt}); trying again in {:.1}s",
            pause.as_secs_f64()
        );
    };
    loop {
        // 3. Apply each change to the set, and print the whole set when it changed. One message can carry
        //    several events (all the changes of one transaction): the set is printed once for them.
        let message = tokio::select! {
            signal = shutdown.recv() => return stop(stream, watch_id, signal, timeout).await,
            message = stream.message() => message,
        };
        let lost = match message {
            Ok(Some(response)) if !response.canceled() => {
                if instances.apply(&response) && instances.instances() != &shown {
                    shown = instances.instances().clone();
                    println!("{}", instances_line(service, &shown));
                }
                continue;
            }
            // 4a. etcd canceled the watch because the revision to resume from was compacted away: those
            //     changes cannot be replayed. Read the set again, and watch from right after that read.
            Ok(Some(response)) if response.compact_revision() > 0 => {
                println!(
                    "revision {} was compacted away; reading {dir} again",
                    instances.next_revision().unwrap_or(0)
                );
                let reloaded = tokio::select! {
                    signal = shutdown.recv() => {
                        println!("stopped ({signal}) while reading again; no watch was open to cancel");
                        return Ok(());
                    }
                    reloaded = instances.reload(&client, timeout, retrying) => reloaded?,
                };
                (stream, watch_id) = (reloaded.stream, reloaded.watch_id);
                if instances.instances() != &shown {
                    shown = instances.instances().clone();
                    println!("{}", instances_line(service, &shown));
                }
                continue;
            }
            Ok(Some(response)) => {
                bail!(
                    "etcd canceled the watch on {dir}: {}",
                    response.cancel_reason()
                )
            }
            Ok(None) => "etcd closed the stream".to_string(),
            Err(e) if discovery::is_permanent(&e) => {
                return Err(anyhow!(e).context(format!("watch {dir}")))
            }
            Err(e) => etcd_connect::explain(&e),
        };

        // 4b. The stream broke: etcd restarted, the network dropped. The client connects again by itself
        //     once etcd is back, but a watch stream is not re-opened for us. `InstanceWatch::open` opens a
        //     new one from the revision after the last change applied, with growing pauses, each try
        //     bounded by --dial-timeout; changes made meanwhile come first, none twice.
        println!("lost the connection to etcd ({lost}); reconnecting");
        let reopened = tokio::select! {
            signal = shutdown.recv() => {
                println!("stopped ({signal}) while reconnecting; no watch was open to cancel");
                return Ok(());
            }
            reopened = instances.open(&client, timeout, retrying) => reopened?,
        };
        (stream, watch_id) = (reopened.stream, reopened.watch_id);
        println!(
            "reconnected: resumed from revision {}",
            instances.next_revision().unwrap_or(0)
        );
    }
}

/// 5. Cancel the watch on the server, so etcd stops tracking it, then exit 0.
///
/// `cancel` only queues the request on the stream; waiting for etcd's `canceled` answer proves it dropped
/// the watch. The wait is bounded: an unconfirmed cancel is harmless, as etcd drops a watch when its
/// stream closes.
async fn stop(mut stream: WatchStream, watch_id: i64, why: &str, timeout: Duration) -> Result<()> {
    let confirmed = tokio::time::timeout(timeout, async {
        stream.cancel(watch_id).await.ok()?;
        loop {
            match stream.message().await {
                Ok(Some(r)) if r.canceled() && r.watch_id() == watch_id => return Some(()),
                // Changes that were already on their way; we have stopped, so they are dropped.
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    })
    .await;
    if let Ok(Some(())) = confirmed {
        println!("stopped ({why}): watch {watch_id} canceled on the server");
    } else {
        println!("stopped ({why}): etcd did not confirm the cancel; it drops the watch when we disconnect");
    }
    Ok(())
}
