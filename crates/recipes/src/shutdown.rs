//! Stopping cleanly: [`Shutdown`] waits for Ctrl-C or SIGTERM, and [`ExitBudget`] bounds the calls a
//! program makes on its way out (unlock, resign, revoke), so that stopping never hangs on an etcd that
//! stopped answering.
//!
//! Depends only on `etcd-client`, `tokio` and `anyhow`: copy this file alone.

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
///
/// Handlers are installed by [`Shutdown::listen`], not on first poll: a signal that arrives while the
/// program is still busy with setup is then remembered instead of killing the process, so it still gets
/// to release its lease or lock.
pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    /// Installs the SIGINT and SIGTERM handlers now.
    pub fn listen() -> Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        })
    }

    /// Runs `work` until it ends or a signal arrives, whichever comes first: `Err` with the signal's name
    /// when the signal came first (and `work` is dropped, cancelling the calls it was making). The one
    /// line that makes a step interruptible, where Go passes a cancelled `context`.
    pub async fn unless_stopped<T>(
        &mut self,
        work: impl Future<Output = T>,
    ) -> std::result::Result<T, &'static str> {
        tokio::select! {
            done = work => Ok(done),
            signal = self.recv() => Err(signal),
        }
    }

    /// Resolves when a signal arrives, with its name for the log line.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// The time left for the calls a program makes on its way out (unlock, resign, revoke, a last read, the
/// clean-up). The clock starts at the first of them, and every one after it gets what is left: together they
/// never take longer than `--dial-timeout`, so stopping never hangs on an etcd that stopped answering.
/// Create it with the dial timeout: `ExitBudget::new(args.connect.dial_timeout)`.
#[derive(Debug)]
pub struct ExitBudget {
    limit: Duration,
    until: Option<tokio::time::Instant>,
}

impl ExitBudget {
    pub fn new(limit: Duration) -> ExitBudget {
        ExitBudget { limit, until: None }
    }

    /// Makes `call` (described by `what`, as in "unlock /lock/694d"), giving up when the budget runs out.
    /// An etcd error keeps its cause, so `errors::report` (or `errors::one_line`) explains it in one line.
    pub async fn call<T>(
        &mut self,
        what: impl std::fmt::Display,
        call: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        let until = *self
            .until
            .get_or_insert_with(|| tokio::time::Instant::now() + self.limit);
        match tokio::time::timeout_at(until, call).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context(what.to_string())),
            Err(_) => bail!(
                "{what}: etcd did not answer within {:?} (--dial-timeout)",
                self.limit
            ),
        }
    }
}
