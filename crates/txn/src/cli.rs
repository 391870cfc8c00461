//! The command line of `cargo run -p txn`. Kept apart from `main.rs`, which is about etcd.

use clap::Parser;
use etcd_connect::{ConnectArgs, KeyParser};

#[derive(Debug, Parser)]
#[command(
    about = "Transactions: put-if-absent, compare-and-swap with retries, and concurrent money transfers \
             whose total never changes"
)]
pub struct Args {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Concurrent tasks moving money between the accounts in step 3.
    // Negative numbers are read as values, so `--workers -1` gets the range error, not "unexpected argument".
    #[arg(long, value_name = "N", default_value_t = 8, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub workers: u32,

    /// Accounts (keys) the money moves between; a transfer needs two. At most 100, so that opening and
    /// deleting them all fits in one transaction (etcd allows 128 operations per transaction by default).
    #[arg(long, value_name = "N", default_value_t = 5, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(2..=100))]
    pub accounts: u32,

    /// Transfers each worker makes.
    #[arg(long, value_name = "N", default_value_t = 100, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub transfers: u32,

    /// Prefix for every key the run writes. It must hold no keys yet: the program deletes what it wrote
    /// there at the end, and nothing else.
    #[arg(long, default_value = "/txn-demo/", value_parser = KeyParser)]
    pub demo_prefix: String,
}
