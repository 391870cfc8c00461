//! Running `scripts/etcd.sh` from a test: its path, and one bounded run with what it printed.

use std::path::PathBuf;
use std::time::Duration;

/// `scripts/etcd.sh` in this repository.
pub fn etcd_sh() -> PathBuf {
    crate::secure::repository().join("scripts/etcd.sh")
}

/// How one run of a script ended, and what it printed.
#[derive(Debug)]
pub struct ScriptRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ScriptRun {
    /// Both outputs, labelled, for failure messages.
    pub fn all(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }

    /// The stdout line that starts with `prefix` (after the indentation). Panics with the output if
    /// there is none.
    pub fn line(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{}", self.all()))
    }
}

/// Runs `cmd` (a script with its arguments and environment set), capturing both outputs; kills it and
/// panics if it takes longer than `limit`. `args` names the run in that message.
pub async fn run_script(cmd: std::process::Command, args: &[&str], limit: Duration) -> ScriptRun {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("etcd.sh {args:?} did not finish within {limit:?}"))
        .expect("bash can run scripts/etcd.sh");
    ScriptRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
