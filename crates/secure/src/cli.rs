//! The command line of `cargo run -p secure`. Kept apart from `main.rs`, which is about etcd.

use clap::Parser;
use etcd_connect::{ConnectArgs, KeyParser};

#[derive(Debug, Parser)]
#[command(
    about = "Connect over TLS with a client certificate, log in as a limited user, and see what its role allows",
    after_help = "Start an etcd with TLS, client certificates and users with `scripts/etcd.sh up --secure`: it \
                  prints the exact command line for this program.\n\nExit status: 0 when every step did what it \
                  shows, 1 on an error."
)]
pub struct Args {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// The prefix the user's role may read and write (`scripts/etcd.sh up --secure` grants `app` /app/).
    #[arg(long, default_value = "/app/", value_parser = KeyParser)]
    pub prefix: String,

    /// A key outside --prefix, for the write that the role must refuse. Never overwritten: the write is
    /// made only if the key does not exist.
    #[arg(long, default_value = "/config/feature-x", value_parser = KeyParser)]
    pub outside_key: String,
}
