//! The command line of `cargo run -p lease`. Kept apart from `main.rs`, which is about etcd.

use clap::Parser;
use etcd_connect::{ConnectArgs, KeyParser};

/// The longest TTL etcd grants (`MaxLeaseTTL` in etcd's lease package, about 285 years). The server
/// refuses more; the command line refuses it first, with a range in the message.
const MAX_TTL_SECS: i64 = 9_000_000_000;

#[derive(Debug, Parser)]
#[command(about = "Put a key on a lease and watch etcd delete it when the lease runs out")]
pub struct Args {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Lease time-to-live in whole seconds.
    // Negative numbers are read as values, so `--ttl -5` says "not in range" rather than "unexpected argument".
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 20,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(1..=MAX_TTL_SECS)
    )]
    pub ttl: i64,

    /// Key put on the lease.
    #[arg(long, default_value = "name", value_parser = KeyParser)]
    pub key: String,

    /// Value written to --key.
    #[arg(long, default_value = "ferris")]
    pub value: String,

    /// Exit right after the put, as the article's program does; etcd still deletes the key on time.
    #[arg(long)]
    pub no_wait: bool,
}
