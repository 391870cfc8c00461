//! The command line of `cargo run -p election`. Kept apart from the programs, which are about etcd.

use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use etcd_connect::{parse_seconds, ConnectArgs, KeyParser};

#[derive(Debug, Parser)]
#[command(
    about = "Leader election on etcd: the two-candidate demo, a candidate with --id and --hold, or --observe",
    after_help = "\
Modes:
  (no mode flag)        the demo: candidates a and b in one process take turns on --name
  --id ID --hold SECS   one candidate: campaign, lead for SECS, resign (Ctrl-C resigns at once)
  --observe             print every change of leader of --name until Ctrl-C

Exit codes:
  0  done: the demo ran, or the candidate led and resigned (also after Ctrl-C or SIGTERM)
  1  error: etcd unreachable, a call failed, or the leadership was lost while leading
  2  a flag is wrong"
)]
pub struct Args {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Name of the election. Candidates' keys go under `<name>/`, as with Go's `concurrency.NewElection`.
    #[arg(long, default_value = "/election", value_parser = KeyParser)]
    pub name: String,

    /// Candidate mode: the value this candidate campaigns with, printed by observers while it leads.
    #[arg(long, value_parser = KeyParser)]
    pub id: Option<String>,

    /// Candidate mode: how long to lead once elected, in seconds (decimals allowed), before resigning.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = parse_seconds)]
    pub hold: Option<Duration>,

    /// TTL of each candidate's session lease, in seconds: how long a crashed leader stays leader.
    // Negative numbers are read as values, so `--ttl -5` says "not in range" rather than "unexpected argument".
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(1..=86_400)
    )]
    pub ttl: i64,

    /// Observer mode: print every change of leader (and every proclaimed value) until Ctrl-C.
    #[arg(long)]
    pub observe: bool,
}

/// What the run does, decided by the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// No mode flag: two candidates in one process, as etcd's Go example does.
    Demo,
    /// One candidate: campaign as `id`, lead for `hold`, resign.
    Candidate { id: String, hold: Duration },
    /// Print each leader change until stopped.
    Observe,
}

impl Args {
    /// Like clap's `parse()`, and also refuses flags that do not go together: `--id` without `--hold` (and
    /// the other way round), and candidate flags with `--observe`. (clap's own `requires` and
    /// `conflicts_with` would do it, but their errors' usage line then shows `--endpoints <ENDPOINTS>`
    /// whenever ETCD_ENDPOINTS is set, as if the user had typed it.)
    pub fn parse_or_exit() -> Args {
        let matches = Args::command().get_matches();
        let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let ttl_given = matches.value_source("ttl") == Some(ValueSource::CommandLine);
        let wrong = match (&args.id, args.hold, args.observe) {
            (Some(_), _, true) | (_, Some(_), true) => {
                "--observe only watches: it cannot be used with --id or --hold"
            }
            (None, None, true) if ttl_given => {
                "--observe holds no lease: it cannot be used with --ttl"
            }
            (Some(_), None, false) => "--id needs --hold SECS: how long to lead once elected",
            (None, Some(_), false) => {
                "--hold needs --id ID: the value this candidate campaigns with"
            }
            _ => return args,
        };
        let kind = if wrong.contains("cannot be used") {
            clap::error::ErrorKind::ArgumentConflict
        } else {
            clap::error::ErrorKind::MissingRequiredArgument
        };
        Args::command().error(kind, wrong).exit()
    }

    pub fn mode(&self) -> Mode {
        match (&self.id, self.hold, self.observe) {
            (_, _, true) => Mode::Observe,
            (Some(id), Some(hold), false) => Mode::Candidate {
                id: id.clone(),
                hold,
            },
            // `parse_or_exit` makes --id and --hold come together.
            _ => Mode::Demo,
        }
    }
}
