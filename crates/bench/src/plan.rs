//! What this run does: the four ways (no subcommand) or one subcommand. Its flags are checked against each
//! other before anything is sent to etcd; it then runs over the connections main.rs opened.

use anyhow::{bail, Result};
use etcd_client::Client;
use recipes::shutdown::Shutdown;

use crate::cleanup::Litter;
use crate::cli::{self, Command, Load};
use crate::four_ways::{self, four_ways};
use crate::keys::Keys;
use crate::lease_keepalive::lease_keepalive;
use crate::put::{self, put};
use crate::range::range;
use crate::txn_put::{self, txn_put};
use crate::watch_latency::watch_latency;

pub(crate) enum Plan {
    FourWays(Load),
    Put(cli::PutArgs, Keys),
    Range(cli::RangeArgs),
    TxnPut(cli::TxnPutArgs, Keys),
    LeaseKeepalive(cli::LeaseArgs),
    WatchLatency(cli::WatchArgs),
}

impl Plan {
    /// The run the command line asks for, or why it cannot be done (one line, before connecting).
    pub(crate) fn check(args: cli::Args) -> Result<Plan> {
        let plan = match args.command {
            None => return Ok(Plan::FourWays(args.load)),
            Some(Command::Put(a)) => {
                let keys = put::keys(&a)?;
                Plan::Put(a, keys)
            }
            Some(Command::Range(a)) => Plan::Range(a),
            Some(Command::TxnPut(a)) => {
                let keys = txn_put::check(&a)?;
                Plan::TxnPut(a, keys)
            }
            Some(Command::LeaseKeepalive(a)) => Plan::LeaseKeepalive(a),
            Some(Command::WatchLatency(a)) => Plan::WatchLatency(a),
        };
        let load = plan.load();
        if load.conns > load.clients {
            bail!(
                "--conns {} is more than --clients {}: each connection needs at least one client to use it",
                load.conns,
                load.clients
            );
        }
        Ok(plan)
    }

    /// The flags every run shares: where etcd is, --prefix, --clients, --conns, --runtime.
    pub(crate) fn load(&self) -> &Load {
        match self {
            Plan::FourWays(load) => load,
            Plan::Put(a, _) => &a.load,
            Plan::Range(a) => &a.load,
            Plan::TxnPut(a, _) => &a.load,
            Plan::LeaseKeepalive(a) => &a.load,
            Plan::WatchLatency(a) => &a.load,
        }
    }

    /// How many connections to open: --conns, or the four ways' own number.
    pub(crate) fn connections(&self) -> u32 {
        match self {
            Plan::FourWays(_) => four_ways::CONNECTIONS,
            _ => self.load().conns,
        }
    }

    /// The default run says where it connected; a subcommand prints only what etcd's tool prints.
    pub(crate) fn say_connected(&self) {
        if let Plan::FourWays(load) = self {
            println!("connected to etcd at {}", load.connect.endpoints_shown());
        }
    }

    /// What the run will leave behind: the keys under its prefix, or (`lease-keepalive`) its leases.
    pub(crate) fn litter(&self) -> Litter {
        let writes_keys = !matches!(self, Plan::LeaseKeepalive(_));
        Litter {
            keys_under: writes_keys.then(|| self.load().prefix.clone()),
            leases: Vec::new(),
        }
    }

    /// Runs it over `conns` and prints what it measured; on Ctrl-C or SIGTERM it stops early, with `Ok`.
    pub(crate) async fn run(
        self,
        conns: &[Client],
        litter: &mut Litter,
        shutdown: &mut Shutdown,
    ) -> Result<()> {
        match self {
            Plan::FourWays(load) => {
                four_ways(conns, &load.prefix, shutdown, load.connect.dial_timeout).await
            }
            Plan::Put(a, keys) => put(a, keys, conns, shutdown).await,
            Plan::Range(a) => range(a, conns, shutdown).await,
            Plan::TxnPut(a, keys) => txn_put(a, keys, conns, shutdown).await,
            Plan::LeaseKeepalive(a) => {
                lease_keepalive(a, conns, &mut litter.leases, shutdown).await
            }
            Plan::WatchLatency(a) => watch_latency(a, conns, shutdown).await,
        }
    }
}
