//! The workshop's checker: `cargo run -p workshop -- list`, `cargo run -p workshop -- check N`.
//!
//! It builds the learner's exercise N alone (`cargo build --bin exNN`, so a broken exercise 5 does not stop
//! `check 3`), runs it against etcd (the local one from `scripts/etcd.sh up`, or `--endpoints`), and judges
//! it by what it printed and what it left in etcd, not by its source. One line says `done`, or `not yet`
//! with a hint: the step that is missing, the expectation that failed, the lesson file to read. It uses
//! keys under `/workshop/NN/` only, and deletes only the keys the exercise is asked to write.

mod build;
mod check;
mod exercises;
mod state;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "The etcd-by-example workshop: list the exercises, check one")]
struct Args {
    #[command(flatten)]
    connect: etcd_connect::ConnectArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The exercises, in order, with the result of their last check.
    List,
    /// Build exercise N, run it against etcd, and say whether it is done.
    Check {
        /// The exercise's number, 1 to 7.
        number: usize,
        /// Check the reference solution (solutions/NN_*.rs) instead of your exercise.
        #[arg(long)]
        solution: bool,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    let args = Args::parse();
    let result: Result<bool> = match args.command {
        Command::List => state::list().map(|()| true),
        Command::Check { number, solution } => check(&args.connect, number, solution).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => recipes::errors::report(Err(e)),
    }
}

/// Checks one exercise, prints the verdict, and remembers it for `list`. `Ok(true)` when done.
async fn check(connect: &etcd_connect::ConnectArgs, number: usize, solution: bool) -> Result<bool> {
    let exercise = exercises::find(number)?;
    let client = etcd_connect::connect(connect).await?;
    let verdict = match build::binary(exercise, solution) {
        Ok(program) => check::run(exercise, &program, client, connect).await?,
        Err(not_built) => not_built,
    };
    println!("{}", verdict.line(exercise));
    if !solution {
        state::remember(exercise, verdict.done);
    }
    Ok(verdict.done)
}
