//! The command line of `cargo run -p bench`. Kept apart from `main.rs`, which is about etcd.
//!
//! The subcommands and flags mirror etcd's own `benchmark` tool (tools/benchmark in etcd's repository),
//! so `bench put --clients 64 --conns 1 --total 10000` and `benchmark put --clients 64 --conns 1
//! --total 10000` ask for the same work.

use clap::{Args as ClapArgs, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use etcd_connect::{ConnectArgs, KeyParser};

#[derive(Debug, Parser)]
#[command(
    about = "Drive etcd hard from one process: sequential, multiplexed, several connections, batched"
)]
pub struct Args {
    /// The flags every subcommand shares. They go before the subcommand, as etcd's Go tool has them
    /// (`bench --endpoints E --clients 64 put ...`), or after it (`bench put --clients 64 --endpoints E
    /// ...`): see [`Args::parse_anywhere`]. Without a subcommand, only the connection flags and --prefix
    /// apply.
    #[command(flatten)]
    pub load: Load,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Args {
    /// Like clap's `parse()`, with the shared flags (those of [`Load`]: the connection flags, --clients,
    /// --conns, --prefix, --runtime) accepted before or after the subcommand. Exits with clap's error
    /// (code 2) on a command line it refuses.
    pub fn parse_anywhere() -> Args {
        Args::try_parse_anywhere(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Args::parse_anywhere`] on given arguments, returning clap's error.
    pub fn try_parse_anywhere<I, T>(args: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Args::command_anywhere();
        let matches = command.try_get_matches_from_mut(args)?;
        if matches.subcommand().is_none() {
            // The default run chooses its own clients, connections and runtime (see four_ways.rs).
            for id in ["clients", "conns", "runtime"] {
                if matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
                    return Err(command.error(
                        clap::error::ErrorKind::ArgumentConflict,
                        format!(
                            "--{id} is for a subcommand (put, range, txn-put, lease-keepalive, \
                             watch-latency); the default run chooses its own"
                        ),
                    ));
                }
            }
        }
        Args::from_arg_matches(&matches)
    }

    /// The command with every flag of [`Load`] marked global, so that clap accepts it on either side of
    /// the subcommand. Each subcommand has the same flags (it flattens `Load` too), and clap gives a
    /// global flag's value to the subcommand's flag of the same name, whichever side it was written on.
    fn command_anywhere() -> clap::Command {
        let shared = Load::augment_args(clap::Command::new("load"));
        shared
            .get_arguments()
            .map(|arg| arg.get_id().clone())
            .fold(Args::command(), |command, id| {
                command.mut_arg(id, |a| a.global(true))
            })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// PUT --total keys, like `benchmark put`.
    Put(PutArgs),
    /// Read one key --total times, like `benchmark range`.
    Range(RangeArgs),
    /// PUT --total keys, --txn-ops of them per transaction, like `benchmark txn-put`.
    TxnPut(TxnPutArgs),
    /// Renew a lease --total times, one lease per client, like `benchmark lease-keepalive`.
    LeaseKeepalive(LeaseArgs),
    /// Time from a PUT to its watch event, --put-total times, like `benchmark watch-latency`.
    WatchLatency(WatchArgs),
}

/// What every subcommand shares: where etcd is, how hard to drive it, and how.
#[derive(Debug, Clone, ClapArgs)]
pub struct Load {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Concurrent requests in flight (etcd's tool calls them clients).
    #[arg(long, default_value = "1", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub clients: u32,

    /// HTTP/2 connections (separate `Client::connect`s) the clients are spread over; at most --clients.
    #[arg(long, default_value = "1", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub conns: u32,

    /// Prefix every key is written under. It must hold no keys yet: the run deletes it at the end.
    #[arg(long, default_value = "/bench/", value_parser = KeyParser)]
    pub prefix: String,

    /// Tokio runtime: `current` (one thread, which leaves the other cores to an etcd on the same machine)
    /// or `multi` (a worker thread per core). See runtime.rs.
    #[arg(long, value_enum, default_value = "current")]
    pub runtime: Runtime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    Multi,
    Current,
}

#[derive(Debug, ClapArgs)]
pub struct PutArgs {
    #[command(flatten)]
    pub load: Load,

    /// Number of PUT requests.
    #[arg(long, default_value = "10000", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub total: u64,

    /// Key size in bytes, after the prefix (keys are zero-padded decimal numbers, readable in etcdctl).
    #[arg(long, default_value = "8", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub key_size: u32,

    /// Value size in bytes.
    #[arg(long, default_value = "8", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    pub val_size: u32,

    /// How many different keys are written (keys are picked among 0..key-space-size).
    #[arg(long, default_value = "1", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub key_space_size: u64,

    /// Write keys 0, 1, 2, ... (wrapping at --key-space-size) instead of picking them at random.
    #[arg(long)]
    pub sequential_keys: bool,
}

#[derive(Debug, ClapArgs)]
pub struct RangeArgs {
    /// Key to read (it may be absent: an empty read is still a full range request).
    #[arg(value_parser = KeyParser)]
    pub key: String,

    #[command(flatten)]
    pub load: Load,

    /// Number of range requests.
    #[arg(long, default_value = "10000", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub total: u64,

    /// `l` linearizable (goes through the leader and a quorum), `s` serializable (the member answers
    /// from its own copy).
    #[arg(long, default_value = "l", value_parser = ["l", "s"])]
    pub consistency: String,
}

#[derive(Debug, ClapArgs)]
pub struct TxnPutArgs {
    #[command(flatten)]
    pub load: Load,

    /// Number of keys PUT in all; they go in ceil(total / txn-ops) transactions.
    #[arg(long, default_value = "10000", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub total: u64,

    /// PUTs per transaction (etcd allows 128 by default, --max-txn-ops).
    #[arg(long, default_value = "64", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub txn_ops: u32,

    /// Key size in bytes, after the prefix.
    #[arg(long, default_value = "8", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub key_size: u32,

    /// Value size in bytes.
    #[arg(long, default_value = "8", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    pub val_size: u32,

    /// The largest request the etcd accepts, in bytes: its own --max-request-bytes, 1.5 MiB unless it was
    /// started with another. A transaction over it is refused before anything is sent.
    #[arg(long, value_name = "BYTES", default_value = "1572864", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=2_147_483_647))]
    pub max_request_bytes: u64,
}

#[derive(Debug, ClapArgs)]
pub struct LeaseArgs {
    #[command(flatten)]
    pub load: Load,

    /// Number of keep-alive requests.
    #[arg(long, default_value = "10000", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub total: u64,
}

#[derive(Debug, ClapArgs)]
pub struct WatchArgs {
    #[command(flatten)]
    pub load: Load,

    /// Number of PUTs whose watch events are timed (one at a time).
    #[arg(long, default_value = "10000", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub put_total: u64,

    /// Value size in bytes.
    #[arg(long, default_value = "8", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    pub val_size: u32,
}
