//! Running `scripts/etcd.sh` from a test: its path, and one bounded run with what it printed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// `scripts/etcd.sh` in this repository.
pub fn etcd_sh() -> PathBuf {
    crate::secure::repository().join("scripts/etcd.sh")
}

/// Variables etcdctl reads as flags: none of the developer's may reach the script or a test's etcdctl.
pub const ETCDCTL_VARIABLES: [&str; 8] = [
    "ETCDCTL_ENDPOINTS",
    "ETCDCTL_CACERT",
    "ETCDCTL_CERT",
    "ETCDCTL_KEY",
    "ETCDCTL_USER",
    "ETCDCTL_PASSWORD",
    "ETCDCTL_DIAL_TIMEOUT",
    "ETCDCTL_COMMAND_TIMEOUT",
];

/// `bash scripts/etcd.sh ARGS` with its state in `dir` (LOCAL_ETCD_DIR) and nothing from the developer's
/// environment that would point it elsewhere: no ports, endpoints, password or etcdctl settings. It runs
/// the etcd the harness runs ([`crate::etcd_binary`]). Stdin is empty and both outputs are piped; the
/// caller adds the ports it wants.
pub fn etcd_sh_command(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(etcd_sh())
        .args(args)
        .env("LOCAL_ETCD_DIR", dir)
        // The etcd and etcdctl of TEST_ETCD_BIN, when it is set.
        .env("PATH", crate::path_with_test_etcd())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "LOCAL_ETCD_PORT",
        "LOCAL_ETCD_PEER_PORT",
        "LOCAL_CLUSTER_CLIENT_PORTS",
        "LOCAL_CLUSTER_PEER_PORTS",
        "ETCD_ENDPOINTS",
        "ETCD_PASSWORD",
    ]
    .into_iter()
    .chain(ETCDCTL_VARIABLES)
    {
        cmd.env_remove(var);
    }
    cmd
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
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
