//! The tokio runtime, chosen by `--runtime`: one thread (`current`, the default) or one per core (`multi`).
//!
//! One thread by default, for a reason particular to a load generator that shares its machine with etcd:
//! every CPU cycle the client spends is one etcd cannot, and a multi-thread runtime spends more of them,
//! waking tasks across threads (futex calls) and moving work between cores. On the 2-core machine of
//! docs/performance.md (release build, runs alternated pair by pair), current_thread used a quarter less
//! CPU for the same requests (`put --clients 64 --conns 1`: 0.72 s against 0.98 s per 20,000 puts) and so
//! finished sooner: 7% for that run, 10% for sequential puts, 7% for 64 reads at a time (medians of 7 to 9
//! pairs). One thread is not a limit here: it does only encoding and framing, a small part of each
//! request's cost, while etcd does the rest. Where etcd runs elsewhere and the client has cores to itself,
//! `--runtime multi` spreads the client over them: measure yours. The runtime is built by hand, not with
//! `#[tokio::main]`, only so that the flag can choose it.

use anyhow::{Context, Result};
use tokio::runtime::{Builder, Runtime};

use crate::cli;

pub(crate) fn build(flavor: cli::Runtime) -> Result<Runtime> {
    log::debug!("tokio runtime: {flavor:?}");
    let mut builder = match flavor {
        cli::Runtime::Multi => Builder::new_multi_thread(),
        cli::Runtime::Current => Builder::new_current_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}
