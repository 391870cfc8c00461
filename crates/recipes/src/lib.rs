//! The recipes: the machinery that keeps an etcd program alive, each piece defined once, so that every
//! topic's `main.rs` is only about its lesson. The Rust counterpart of Go's `concurrency` package (and of
//! what Apache Curator calls recipes).
//!
//! | module | what | Go |
//! |---|---|---|
//! | [`kept_lease`] | [`KeptLease`](kept_lease::KeptLease): a lease you renew; [`Session`](kept_lease::Session): a lease renewed in the background | `KeepAlive`, `concurrency.NewSession` |
//! | [`resuming_watch`] | [`ResumingWatch`](resuming_watch::ResumingWatch): a watch that resumes where it stopped | the `WatchChan` loop, with `WithRev` |
//! | [`shutdown`] | [`Shutdown`](shutdown::Shutdown) (Ctrl-C, SIGTERM), [`ExitBudget`](shutdown::ExitBudget) | `signal.NotifyContext`, `context.WithTimeout` |
//! | [`errors`] | [`explain`](errors::explain), [`report`](errors::report), [`is_transient`](errors::is_transient), [`Backoff`](errors::Backoff) | `err.Error()`, the client's own retries |
//!
//! Each module depends only on `etcd-client`, `tokio`, `anyhow` and `log`, plus at most one sibling that
//! its header names: copy one or two files into your service (see README.md, "Copy a recipe").

pub mod errors;
pub mod kept_lease;
pub mod resuming_watch;
pub mod shutdown;
