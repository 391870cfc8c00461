//! Running an exercise against etcd and judging it by what it printed and what it left there.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use etcd_client::Client;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::exercises::Exercise;

mod judges;

/// The outcome of one check: done, or not yet with what failed and a hint.
pub struct Verdict {
    pub done: bool,
    pub what: String,
    pub hint: String,
}

impl Verdict {
    pub fn done() -> Verdict {
        Verdict {
            done: true,
            what: String::new(),
            hint: String::new(),
        }
    }

    pub fn not_yet(what: impl Into<String>, hint: &str) -> Verdict {
        Verdict {
            done: false,
            what: what.into(),
            hint: hint.to_string(),
        }
    }

    /// The one line the checker prints.
    pub fn line(&self, exercise: &Exercise) -> String {
        let head = format!("exercise {} ({})", exercise.number, exercise.title);
        if self.done {
            return format!("{head}: done");
        }
        format!(
            "{head}: not yet: {}; hint: {}; read {}",
            self.what, self.hint, exercise.lesson
        )
    }
}

/// A running exercise: its output line by line, and what it printed on stderr once it ends.
pub struct Run {
    child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    pub stdout: Vec<String>,
}

impl Run {
    fn start(program: &Path, endpoints: &str) -> Result<Run> {
        let mut child = Command::new(program)
            .env("ETCD_ENDPOINTS", endpoints)
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("run {}", program.display()))?;
        let stdout = child.stdout.take().context("the exercise's stdout")?;
        Ok(Run {
            child,
            lines: BufReader::new(stdout).lines(),
            stdout: Vec::new(),
        })
    }

    /// Waits up to `limit` for a printed line that contains `needle`; `None` if none came.
    pub async fn line_containing(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout_at(deadline, self.lines.next_line()).await
        {
            self.stdout.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    }

    /// Sends SIGINT, what Ctrl-C sends.
    pub fn interrupt(&self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(pid as i32, libc::SIGINT) };
        }
    }

    /// Waits up to `limit` for the program to end: whether it exited 0, and its stderr. A program still
    /// running then is killed, and the result says so.
    pub async fn finish(mut self, limit: Duration) -> (Result<bool, String>, Vec<String>) {
        let status = tokio::time::timeout(limit, self.child.wait()).await;
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(1), self.lines.next_line()).await
        {
            self.stdout.push(line);
        }
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), err.read_to_string(&mut stderr)).await;
        }
        let ended = match status {
            Ok(Ok(status)) if status.success() => Ok(true),
            Ok(Ok(_)) => Err(stderr),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(format!("it was still running after {limit:?}"))
            }
        };
        (ended, self.stdout)
    }
}

/// The hint for a failure whose reason only the program's whole output shows; `run` adds the command.
const RUN_IT_ALONE: &str = "run it alone to see the whole error";

/// Why a program failed, in the words of the checker: a `todo!()` it reached, or its error.
pub fn failure(stderr: &str) -> (String, String) {
    // `thread 'main' (1234) panicked at crates/workshop/exercises/01_put_get.rs:18:9:`, then the message.
    let lines: Vec<&str> = stderr.lines().collect();
    if let Some(line) = lines.iter().position(|l| l.contains(" panicked at ")) {
        let at = lines[line].split(" panicked at ").nth(1).unwrap_or("");
        let message = lines.get(line + 1).copied().unwrap_or("");
        let todo = message
            .strip_prefix("not yet implemented")
            .map(|m| m.trim_start_matches(": "));
        return match todo {
            Some(todo) => (
                format!("it reached a todo!() at {}", at.trim_end_matches(':')),
                match todo.trim() {
                    "" => "write that step".to_string(),
                    todo => format!("write that step: {todo}"),
                },
            ),
            None => (
                format!("it panicked at {}: {message}", at.trim_end_matches(':')),
                "read the panic's message".to_string(),
            ),
        };
    }
    // A task's panic comes back through `JoinHandle` as an error: `task 4 panicked with message "..."`.
    let last = lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&"no message");
    if let Some((_, todo)) = last.split_once("panicked with message \"not yet implemented: ") {
        return (
            "a task reached a todo!()".to_string(),
            format!("write that step: {}", todo.trim_end_matches('"')),
        );
    }
    (format!("it failed: {last}"), RUN_IT_ALONE.to_string())
}

/// Runs the exercise with a clean slate (its keys deleted), judges it, and deletes its keys again.
pub async fn run(
    exercise: &Exercise,
    program: &Path,
    mut client: Client,
    connect: &etcd_connect::ConnectArgs,
) -> Result<Verdict> {
    delete_its_keys(&mut client, exercise).await?;
    judges::prepare(exercise.number, &mut client).await?;
    let endpoints = connect.endpoints.join(",");
    let run = Run::start(program, &endpoints)?;
    let verdict = judges::judge(exercise.number, run, &mut client).await;
    delete_its_keys(&mut client, exercise).await?;
    let mut verdict = verdict?;
    if verdict.hint == RUN_IT_ALONE {
        // The whole error is in what the program printed: say how to run it alone.
        verdict.hint = format!(
            "run it alone to see the whole error: ETCD_ENDPOINTS={endpoints} cargo run -q -p workshop --bin {}",
            exercise.binary(program.ends_with(exercise.binary(true)))
        );
    }
    Ok(verdict)
}

/// Deletes the keys the exercise is asked to write, and nothing else.
async fn delete_its_keys(client: &mut Client, exercise: &Exercise) -> Result<()> {
    for key in exercise.keys {
        client
            .delete(*key, None)
            .await
            .with_context(|| format!("delete {key}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_todo_is_named_with_its_place_and_its_message() {
        let stderr = "\nthread 'main' (4242) panicked at crates/workshop/exercises/01_put_get.rs:18:9:\n\
                      not yet implemented: put KEY = hello with client.put\nnote: run with `RUST_BACKTRACE=1`\n";
        let (what, hint) = failure(stderr);
        assert_eq!(
            what,
            "it reached a todo!() at crates/workshop/exercises/01_put_get.rs:18:9"
        );
        assert_eq!(hint, "write that step: put KEY = hello with client.put");
    }

    #[test]
    fn another_failure_is_its_last_line() {
        let (what, _) = failure("Error: etcd is unavailable\n");
        assert_eq!(what, "it failed: Error: etcd is unavailable");
    }
}
