//! The command line of `cargo run -p watch`. Kept apart from `main.rs`, which is about etcd.

use anyhow::{bail, Result};
use clap::Parser;
use etcd_connect::{ConnectArgs, KeyParser};

#[derive(Debug, Parser)]
#[command(about = "Print every change to a key (or prefix) as it happens, surviving etcd restarts")]
pub struct Args {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Key to watch.
    #[arg(long, default_value = "name", value_parser = KeyParser)]
    pub key: String,

    /// Watch every key that starts with --key.
    #[arg(long)]
    pub prefix: bool,

    /// Start from this store revision (1 or more): replay the history since then, or, if the store has
    /// not reached it yet, wait for it.
    #[arg(long, value_name = "R", allow_negative_numbers = true, value_parser = parse_revision)]
    pub rev: Option<i64>,

    /// Exit after printing this many changes (1 or more).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_count)]
    pub count: Option<u64>,
}

/// `--rev`: a store revision, 1 or more (revision 0 would mean "now" to etcd, which is the default).
fn parse_revision(raw: &str) -> Result<i64> {
    match raw.trim().parse::<i64>() {
        Ok(rev) if rev >= 1 => Ok(rev),
        _ => bail!("`{raw}` is not a revision: give a whole number, 1 or more"),
    }
}

/// `--count`: how many changes to print before exiting, 1 or more.
fn parse_count(raw: &str) -> Result<u64> {
    match raw.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => bail!("`{raw}` is not a count: give a whole number, 1 or more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_and_counts_start_at_one() {
        assert_eq!(parse_revision("7").unwrap(), 7);
        assert_eq!(parse_count("3").unwrap(), 3);
        for bad in ["0", "-1", "x", "", "1.5"] {
            assert!(parse_revision(bad).is_err(), "--rev {bad:?} was accepted");
            assert!(parse_count(bad).is_err(), "--count {bad:?} was accepted");
        }
    }

    #[test]
    fn the_flags_parse_as_documented() {
        let args = Args::try_parse_from(["watch", "--key", "/app/", "--prefix", "--rev", "5"])
            .expect("valid flags parse");
        assert_eq!(args.key, "/app/");
        assert!(args.prefix);
        assert_eq!(args.rev, Some(5));
        assert_eq!(args.count, None);
        let default = Args::try_parse_from(["watch"]).expect("no flags is valid");
        assert_eq!(default.key, "name", "the key every topic uses by default");
    }
}
