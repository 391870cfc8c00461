//! The command line of `cargo run -p kv`. Kept apart from `main.rs`, which is about etcd.

use clap::Parser;
use etcd_connect::{ConnectArgs, KeyParser};

#[derive(Debug, Parser)]
#[command(about = "PUT and GET a key, then explore revisions, prefixes and deletes")]
pub struct Args {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Key written and read in steps 1 and 2 (left in place afterwards).
    #[arg(long, default_value = "name", value_parser = KeyParser)]
    pub key: String,

    /// Value written to --key.
    #[arg(long, default_value = "ferris")]
    pub value: String,

    /// Prefix for the keys of steps 3 to 6. It must hold no keys yet, and --key must lie outside it: the
    /// program deletes what it wrote there at the end, and nothing else.
    #[arg(long, default_value = "/kv-demo/", value_parser = KeyParser)]
    pub demo_prefix: String,
}
