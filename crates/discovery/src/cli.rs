//! The command line of `cargo run -p discovery`. Kept apart from the programs (`main.rs`, `register.rs`,
//! `watcher.rs`), which are about etcd.

use anyhow::{bail, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use etcd_connect::{ConnectArgs, KeyParser};

/// The longest TTL etcd grants (`MaxLeaseTTL` in etcd's lease package, about 285 years). The server
/// refuses more; the command line refuses it first, with a range in the message.
const MAX_TTL_SECS: i64 = 9_000_000_000;

#[derive(Debug, Parser)]
#[command(
    about = "Service registration and discovery on etcd: the demo, or `register` / `watch` in separate terminals",
    after_help = "\
Without a subcommand it runs the demo: two instances of the service `demo` register, a watcher prints the
set after each change, then both deregister.
Keys are <prefix>/<service>/<id>, and each value is the instance's address."
)]
pub struct Args {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Where services register: an instance is the key `<prefix>/<service>/<id>`.
    #[arg(long, global = true, default_value = "/services", value_parser = KeyParser)]
    pub prefix: String,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register one instance and keep it registered until Ctrl-C or SIGTERM, which deregister it at once.
    Register(RegisterArgs),
    /// Print the instances of a service, then the whole set again after every change, until Ctrl-C.
    Watch(WatchArgs),
}

#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// The service this instance belongs to.
    #[arg(long, value_name = "S", value_parser = Checked(parse_name))]
    pub service: String,

    /// This instance's name, unique within the service.
    #[arg(long, value_name = "ID", value_parser = Checked(parse_name))]
    pub id: String,

    /// Where clients reach this instance, as host:port. It is only data for etcd: nothing connects to it.
    #[arg(long, value_name = "HOST:PORT", value_parser = Checked(parse_addr))]
    pub addr: String,

    /// Lease time-to-live in whole seconds: how long the entry outlives this process if it is killed.
    // Negative numbers are read as values, so `--ttl -5` says "not in range" rather than "unexpected argument".
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 5,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(1..=MAX_TTL_SECS)
    )]
    pub ttl: i64,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The service whose instances to follow.
    #[arg(long, value_name = "S", value_parser = Checked(parse_name))]
    pub service: String,
}

impl Args {
    /// Like clap's `parse()`, with the connection flags (`--endpoints`, `--dial-timeout`, and the TLS
    /// and user flags) accepted before or after the subcommand (`discovery --dial-timeout 2 watch ...` and
    /// `discovery watch --dial-timeout 2 ...`).
    pub fn parse_anywhere() -> Args {
        let matches = Args::command_anywhere().get_matches();
        Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The command with the shared `ConnectArgs` marked global, which that crate does not do itself.
    fn command_anywhere() -> clap::Command {
        [
            "endpoints",
            "dial_timeout",
            "cacert",
            "cert",
            "tls_key",
            "user",
        ]
        .into_iter()
        .fold(Args::command(), |command, id| {
            command.mut_arg(id, |a| a.global(true))
        })
    }
}

/// A service name or an instance ID: one part of a key, printed in `[id=addr, ...]` lines. A `/` would
/// move the key into another service's part of the prefix, and `,` `=` `[` `]` or spaces would make the
/// printed set ambiguous, so only letters, digits and `.` `_` `-` `:` are accepted.
fn parse_name(raw: &str) -> Result<String> {
    if raw.is_empty() {
        bail!("a name cannot be empty");
    }
    if let Some(c) = raw
        .chars()
        .find(|c| !(c.is_alphanumeric() || ".-_:".contains(*c)))
    {
        bail!(
            "{raw:?} contains {c:?}: use letters, digits, '.', '-', '_' or ':' (a '/' would put the key \
             under another service, and spaces or ',' '=' '[' ']' would make the printed set ambiguous)"
        );
    }
    Ok(raw.to_string())
}

/// An instance's address, `host:port` with a port from 1 to 65535. The host is only text for etcd (a name,
/// an IPv4 address, `[::1]`): nothing connects to it, so it is not resolved.
fn parse_addr(raw: &str) -> Result<String> {
    let Some((host, port)) = raw.rsplit_once(':') else {
        bail!("{raw:?} is not an address: expected host:port, for example 127.0.0.1:8001");
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        bail!("{raw:?} is not an address: expected host:port, for example 127.0.0.1:8001");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(raw.to_string()),
        _ => {
            bail!("{raw:?} has no valid port: expected a number from 1 to 65535 after the last ':'")
        }
    }
}

/// A value parser from a checking function, whose error names the flag and shows the value escaped, on
/// one line (clap's own message would print a value with a newline as it is, over two lines).
#[derive(Debug, Clone, Copy)]
struct Checked(fn(&str) -> Result<String>);

impl clap::builder::TypedValueParser for Checked {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<String, clap::Error> {
        let flag = arg.map_or_else(|| "the value".to_string(), |a| format!("'{a}'"));
        let why = match value.to_str() {
            Some(raw) => match (self.0)(raw) {
                Ok(checked) => return Ok(checked),
                Err(e) => e.to_string(),
            },
            None => format!("{value:?} is not valid UTF-8"),
        };
        let message = format!("invalid value for {flag}: {why}\n");
        Err(clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Args, clap::Error> {
        let matches = Args::command_anywhere().try_get_matches_from(args)?;
        Args::from_arg_matches(&matches)
    }

    #[test]
    fn names_are_one_plain_part_of_a_key() {
        assert_eq!(parse_name("api").unwrap(), "api");
        assert_eq!(parse_name("web-1.eu:a_b").unwrap(), "web-1.eu:a_b");
        for bad in ["", "a/b", "a b", "a,b", "a=b", "[a]", "a\nb"] {
            assert!(parse_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn addresses_need_a_port_from_1_to_65535() {
        for good in ["127.0.0.1:8001", "[::1]:80", "localhost:65535"] {
            assert_eq!(parse_addr(good).unwrap(), good);
        }
        for bad in [
            "nonsense",
            ":80",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:x",
            "a b:1",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn connection_flags_go_before_or_after_the_subcommand() {
        let before = parse(&[
            "discovery",
            "--dial-timeout",
            "2",
            "watch",
            "--service",
            "api",
        ])
        .unwrap();
        let after = parse(&[
            "discovery",
            "watch",
            "--service",
            "api",
            "--dial-timeout",
            "2",
        ])
        .unwrap();
        for args in [before, after] {
            assert_eq!(args.connect.dial_timeout, std::time::Duration::from_secs(2));
            assert!(matches!(args.command, Some(Command::Watch(_))));
        }
        let prefixed =
            parse(&["discovery", "watch", "--service", "api", "--prefix", "/x"]).unwrap();
        assert_eq!(prefixed.prefix, "/x");
        let demo = parse(&["discovery"]).unwrap();
        assert!(demo.command.is_none());
        assert_eq!(demo.prefix, "/services");
        let tls_after = parse(&[
            "discovery",
            "watch",
            "--service",
            "api",
            "--cacert",
            "ca.crt",
            "--cert",
            "c.crt",
            "--key-file",
            "c.key",
            "--user",
            "app",
        ])
        .unwrap();
        assert_eq!(tls_after.connect.secure.user.as_deref(), Some("app"));
        assert!(tls_after.connect.secure.tls());
    }
}
