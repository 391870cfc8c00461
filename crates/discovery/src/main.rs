//! # discovery: service registration and discovery
//!
//! Instances of a service register themselves in etcd; their clients find them, and learn at once when
//! one comes or goes. An instance writes `<prefix>/<service>/<id>` = its address, only if that key is
//! free, on a lease it keeps alive: Ctrl-C revokes the lease, which deletes the key at once, and a killed
//! instance's key goes when the TTL runs out. A client reads the set with one GET, then watches the prefix
//! from that read's revision + 1, so no registration in between is missed.
//!
//! ```text
//! cargo run -p discovery                                              # the demo, in one process
//! cargo run -p discovery -- watch --service api                       # terminal 1: the client's view
//! cargo run -p discovery -- register --service api --id a --addr 127.0.0.1:8001   # terminal 2
//! ```
//!
//! Try next: Ctrl-C one `register` and see the watcher drop it at once; `kill -9` another and see it go
//! about `--ttl` seconds later; start a second `--id a` while the first runs, and see it refused. In a
//! service, `register` and `InstanceWatch` from `src/lib.rs` pack the same steps.

mod cli;
mod demo;
mod register;
mod watcher;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cli::Command;
use demo::{refuse_keys_not_ours, retrying};
use discovery::{Holder, InstanceWatch};
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use recipes::kept_lease::Session;
use recipes::shutdown::{ExitBudget, Shutdown};
use tokio::time::timeout;
use watcher::instances_line;

/// The demo's service and instances, and its TTL: short, so the entries of a demo killed halfway go soon.
const DEMO: &str = "demo";
const DEMO_INSTANCES: [(&str, &str); 2] = [("a", "127.0.0.1:8001"), ("b", "127.0.0.1:8002")];
const DEMO_TTL: i64 = 5;
/// How long the demo waits for what etcd should do at once (report a change to the watcher).
const DEMO_TIMEOUT: Duration = Duration::from_secs(10);

// The demo renews two leases in background tasks while it registers and watches: one thread runs it all.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse_anywhere()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    // Listen for Ctrl-C / SIGTERM before anything can block, so a signal always leads to a clean exit.
    let mut shutdown = Shutdown::listen()?;
    // 0. Connect (`dial` checks that etcd answers within --dial-timeout; Ctrl-C stops it at once).
    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout})
    let connect = etcd_connect::dial(&args.connect, |endpoints, options| {
        Client::connect(endpoints, Some(options))
    });
    let client = match shutdown.unless_stopped(connect).await {
        Ok(client) => client?,
        Err(signal) => {
            println!("{signal}: stopped before connecting; nothing was registered");
            return Ok(());
        }
    };
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // `--prefix /services/` and `--prefix /services` mean the same: keys are `<prefix>/<service>/<id>`.
    let prefix = args.prefix.trim_end_matches('/');
    match &args.command {
        // `run` (src/demo.rs) makes the steps below, until they end or Ctrl-C; then it deregisters.
        None => Demo::new(client, prefix, &args).run(&mut shutdown).await,
        Some(Command::Register(f)) => register::run(client, &args, f, prefix, &mut shutdown).await,
        Some(Command::Watch(f)) => watcher::run(client, &args, f, prefix, &mut shutdown).await,
    }
}

/// The demo: a watcher, then the instances a and b of the service `demo`, each on a lease of its own (two
/// processes would have one each), then a and b deregistered.
struct Demo {
    client: Client,
    dir: String,
    timeout: Duration,
    /// What it registered and has not deregistered yet: deregistered on the way out, whatever happens.
    registered: Vec<(String, Session)>,
}

impl Demo {
    async fn steps(&mut self) -> Result<()> {
        let (dir, timeout) = (self.dir.clone(), self.timeout);
        let mut watcher = self.start_watcher().await?;
        // 2, 3. Register a, then b; after each, the watcher reports the new set.
        for (step, (id, addr)) in (2..).zip(DEMO_INSTANCES) {
            let key = format!("{dir}{id}");
            let Ok(session) = self.register(&key, addr).await? else {
                bail!("{key} was taken while the demo ran; run it again with another --prefix");
            };
            let (lease, ttl) = (session.lease_id(), session.ttl());
            let every = ttl as f64 / 3.0;
            println!(
                "{step}. registered {id} = {addr} as {key} on lease {lease:016x} (ttl {ttl}s, renewed every {every:.1}s)"
            );
            self.registered.push((key, session));
            self.print_next_set(&mut watcher, id).await?;
        }
        // 4. A second instance that picked the ID `a` is refused: the transaction writes nothing and
        //    reads the holder instead. Nothing changed, so the watcher has nothing to report.
        let key = format!("{dir}a");
        match self.register(&key, "127.0.0.1:8009").await? {
            Err(Holder { key, addr, lease, .. }) => println!(
                "4. a second a at 127.0.0.1:8009 was refused: {key} is held by {addr} on lease {lease:016x}, and stays as it was"
            ),
            Ok(session) => {
                self.registered.push((key.clone(), session));
                bail!("a second registration of {key} was accepted, though the key existed");
            }
        }
        // 5, 6. Deregister a, then b; the watcher sees each DELETE at once.
        for (step, (id, _)) in (5..).zip(DEMO_INSTANCES) {
            let (key, session) = self.registered.remove(0);
            let lease = session.lease_id();
            let budget = &mut ExitBudget::new(timeout);
            self.deregister(&key, session, budget).await?;
            println!("{step}. deregistered {id}: revoked lease {lease:016x}, so etcd deleted {key} at once");
            self.print_next_set(&mut watcher, id).await?;
        }
        // Say what is left, read back from etcd rather than assumed.
        let count_only = GetOptions::new().with_prefix().with_count_only();
        let left = self.client.get(dir.as_str(), Some(count_only)).await?;
        println!(
            "done: {} key(s) left under {dir}, and both leases are revoked",
            left.count()
        );
        Ok(())
    }

    /// 1. The client's side: read the set with one GET, then watch the prefix from the revision right
    ///    after that read, so that an instance registered in between is replayed, not missed.
    async fn start_watcher(&mut self) -> Result<InstanceWatch> {
        let dir = self.dir.as_str();
        // Go: resp, err := cli.Get(ctx, dir, clientv3.WithPrefix())
        let got = self.client.get(dir, Some(GetOptions::new().with_prefix()));
        let got = got.await?;
        refuse_keys_not_ours(&got, dir)?;
        let mut watcher = InstanceWatch::new(dir);
        watcher.load(&got);
        // Go: wch := cli.Watch(ctx, dir, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
        //     `InstanceWatch` (src/lib.rs) keeps the set and watches through a recipes ResumingWatch,
        //     which opens the watch again where it broke (an etcd restart), missing no change.
        let watch = watcher.watch(&self.client, self.timeout, retrying);
        let from = timeout(DEMO_TIMEOUT, watch).await;
        let from = from.context("the watch did not open in time")??;
        let rev = from - 1;
        println!("1. watcher: read {dir} at revision {rev}, and watches it from revision {from}");
        println!("   watcher: {}", instances_line(DEMO, watcher.instances()));
        Ok(watcher)
    }

    /// Registers `key` = `addr` on a lease of its own, kept alive in the background, if the key is free;
    /// if it is taken, revokes the lease and returns who holds the key.
    async fn register(&mut self, key: &str, addr: &str) -> Result<Result<Session, Holder>> {
        // Go: lease, err := cli.Grant(ctx, ttl)
        let lease = self.client.lease_grant(DEMO_TTL, None).await?;
        let (id, ttl) = (lease.id(), lease.ttl());
        // Go: cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
        //     Then(clientv3.OpPut(key, addr, clientv3.WithLease(lease.ID))).Else(clientv3.OpGet(key))
        // Written only if the key does not exist (create revision 0): a plain PUT would take over the
        // key of another instance that picked the same ID. If it exists, the transaction reads it.
        let free = Compare::create_revision(key, CompareOp::Equal, 0);
        let put = TxnOp::put(key, addr, Some(PutOptions::new().with_lease(id)));
        let get = TxnOp::get(key, None);
        let txn = Txn::new().when([free]).and_then([put]).or_else([get]);
        let written = self.client.txn(txn).await;
        let written = written.with_context(|| format!("register {key}"))?;
        if let Some(holder) = Holder::in_reply(key, &written) {
            self.client.lease_revoke(id).await?;
            return Ok(Err(holder));
        }
        // Go: ch, err := cli.KeepAlive(ctx, lease.ID), which renews in a goroutine: a recipes
        //     Session renews every TTL/3 in a task, and re-opens the keep-alive stream if it breaks.
        Ok(Ok(Session::start(&self.client, id, ttl).await?))
    }

    /// Stops the renewals and revokes the lease: etcd deletes the key at once. (Killed, an instance's
    /// key would go only when its TTL runs out.)
    async fn deregister(&mut self, key: &str, lease: Session, exit: &mut ExitBudget) -> Result<()> {
        let (id, ttl) = (lease.lease_id(), lease.ttl());
        drop(lease);
        // Go: cli.Revoke(ctx, lease.ID)
        let what = format!("revoke lease {id:016x}; {key} goes when its TTL of {ttl}s runs out");
        exit.call(what, self.client.lease_revoke(id)).await?;
        Ok(())
    }
}
