//! The command line of `cargo run -p lock`. Kept apart from `main.rs`, which is about etcd.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use etcd_connect::{parse_seconds, ConnectArgs, KeyParser};

/// Exit code when `--try` finds the lock taken, so that scripts can tell "busy" from "broken".
pub const EXIT_TAKEN: u8 = 2;

/// How long `--try` holds the lock when `--hold` is not given.
pub const TRY_HOLD: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    about = "A distributed lock on etcd: the two-session demo, or a contender with --hold or --try",
    after_help = "\
Exit codes:
  0  done: the demo ran, or the lock was held and released (also after Ctrl-C or SIGTERM)
  1  error: etcd unreachable, a call failed, a flag is wrong, or the lock was lost while held
  2  --try found the lock taken, and left nothing behind"
)]
pub struct Args {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Name of the lock. Contenders' keys go under `<name>/`.
    #[arg(long, default_value = "/lock", value_parser = KeyParser)]
    pub name: String,

    /// The demo's fenced write goes here (deleted at the end). It must not exist yet.
    #[arg(long, value_name = "KEY", default_value = "/demo/protected-config", value_parser = KeyParser)]
    pub protected_key: String,

    /// TTL of each session's lease, in seconds: how long the lock of a crashed holder stays taken.
    // Negative numbers are read as values, so `--ttl -1` says "not in range" rather than "unexpected argument".
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(1..=86_400)
    )]
    pub ttl: i64,

    /// Contender mode: wait for the lock, hold it SECS (decimals allowed), release it.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = parse_seconds)]
    pub hold: Option<Duration>,

    /// Contender mode without waiting: take the lock only if it is free, else exit at once with code 2.
    /// Holds it for --hold SECS, 5 if --hold is not given.
    #[arg(long = "try")]
    pub try_lock: bool,
}

/// How a run ended, when it did not fail.
pub enum Outcome {
    Done,
    /// `--try` found the lock taken.
    Taken,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::Taken => ExitCode::from(EXIT_TAKEN),
        }
    }
}

/// What the run does, decided by the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No --hold, no --try: the article's two-session demo.
    Demo,
    /// One contender: get the lock (waiting for it, or only if free with `try_once`), hold it, release it.
    Contend { hold: Duration, try_once: bool },
}

impl Args {
    /// Like clap's `parse()`, except that bad flags exit with 1: clap's own code for them is 2, which here
    /// means "lock taken".
    pub fn parse_or_exit() -> Args {
        match Args::try_parse() {
            Ok(args) => args,
            Err(e) if e.use_stderr() => {
                let _ = e.print();
                std::process::exit(1);
            }
            // --help and --version: print to stdout, exit 0.
            Err(e) => e.exit(),
        }
    }

    pub fn mode(&self) -> Mode {
        match (self.hold, self.try_lock) {
            (None, false) => Mode::Demo,
            (hold, try_once) => Mode::Contend {
                hold: hold.unwrap_or(TRY_HOLD),
                try_once,
            },
        }
    }
}
