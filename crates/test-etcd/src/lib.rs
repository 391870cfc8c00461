//! Test-only support for etcd-by-example: every test talks to a real etcd.
//!
//! - [`TestEtcd`] starts a throwaway single-member etcd on free loopback ports with its own temporary data
//!   directory, and can stop, SIGKILL and restart it on the same ports and data. Dropping it kills the
//!   process and removes the directory, even when the test panics.
//! - [`Bin`] runs a topic binary against such a member, reads its output line by line with deadlines, sends
//!   it signals, and kills it when dropped.
//! - [`eventually`] polls a condition until a deadline, for things etcd does on its own clock (lease expiry).
//! - [`Transcript`] reads the default run a topic README shows, and checks a program's output against it.
//!
//! Tests never use `127.0.0.1:2379`: that may be a developer's own etcd.

use std::ffi::OsString;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use cluster::TestCluster;
pub use nix::sys::signal::Signal;
pub use script::{etcd_sh, etcd_sh_command, run_script, ScriptRun, ETCDCTL_VARIABLES};
pub use secure::{SecureEtcd, APP_PASSWORD, APP_PREFIX, APP_USER, ROOT_PASSWORD};
pub use transcript::Transcript;

mod cluster;
pub mod go;
mod script;
mod secure;
mod transcript;

/// How to get etcd, shown when it is missing.
pub const INSTALL_HINT: &str = "etcd is not on PATH: run `scripts/install-deps.sh` \
(Debian/Ubuntu: `sudo apt-get install etcd-server etcd-client protobuf-compiler libprotobuf-dev`; \
macOS: `brew install etcd protobuf`)";

/// How long a fresh member may take to become healthy on a busy 2-core machine.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The environment variable that picks the etcd the tests run, instead of the one on PATH:
/// `TEST_ETCD_BIN=.etcd/bin/3.5.1/etcd scripts/test.sh` (a path relative to the repository's top folder, or
/// absolute). etcdctl is taken from the same folder.
pub const TEST_ETCD_BIN: &str = "TEST_ETCD_BIN";

/// The etcd the tests run: [`TEST_ETCD_BIN`] if set, else `etcd` on PATH; panics with what to do if
/// there is none. Tests fail here; they never skip.
pub fn etcd_binary() -> PathBuf {
    match std::env::var_os(TEST_ETCD_BIN).filter(|v| !v.is_empty()) {
        Some(chosen) => chosen_etcd_binary(&chosen),
        None => etcd_binary_in(std::env::var_os("PATH")),
    }
}

/// The etcd that a [`TEST_ETCD_BIN`] value names, with etcdctl beside it; panics if either is missing.
pub fn chosen_etcd_binary(value: &std::ffi::OsStr) -> PathBuf {
    let etcd = secure::repository().join(value);
    let etcdctl = etcd.with_file_name("etcdctl");
    if !etcd.is_file() || !etcdctl.is_file() {
        panic!(
            "{TEST_ETCD_BIN}={} names no etcd with etcdctl beside it (looked for {} and {}): \
             unset it to use the etcd on PATH, or for etcd 3.5.1 run `scripts/install-deps.sh --etcd35` \
             and set {TEST_ETCD_BIN}=.etcd/bin/3.5.1/etcd",
            value.to_string_lossy(),
            etcd.display(),
            etcdctl.display()
        );
    }
    etcd
}

/// The etcdctl that goes with [`etcd_binary`]: the one beside [`TEST_ETCD_BIN`], else `etcdctl` on PATH.
pub fn etcdctl_binary() -> PathBuf {
    match std::env::var_os(TEST_ETCD_BIN).filter(|v| !v.is_empty()) {
        Some(chosen) => chosen_etcd_binary(&chosen).with_file_name("etcdctl"),
        None => PathBuf::from("etcdctl"),
    }
}

/// PATH for a script that runs `etcd` and `etcdctl` by name (scripts/etcd.sh): the folder of
/// [`TEST_ETCD_BIN`] first when it is set, so the script runs the same etcd as the harness.
pub fn path_with_test_etcd() -> OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::var_os(TEST_ETCD_BIN).is_some_and(|v| !v.is_empty()) {
        let dir = etcd_binary()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let dirs = std::iter::once(dir).chain(std::env::split_paths(&path));
        return std::env::join_paths(dirs).expect("the folders on PATH can be joined again");
    }
    path
}

/// Finds `etcd` on the search path given, or panics with the install command.
pub fn etcd_binary_in(path: Option<OsString>) -> PathBuf {
    path.iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// A loopback port that nothing is bound to right now (so [`port_is_free`]), below the kernel's range of
/// ephemeral ports.
///
/// Outside that range because the kernel gives its ports to outgoing connections: a port from it that
/// is free now can be the local end of some process's connection a moment later (the suite opens
/// hundreds), and etcd's bind then fails with "address already in use", on every retry for as long as
/// that connection stays open, and even for a minute after it closes (TIME-WAIT). Below the range, only
/// another program that picks the same port at the same moment can take it; [`TestEtcd`] retries with
/// fresh ports when that happens.
pub fn free_port() -> u16 {
    let (low, high) = unclaimed_port_range();
    let span = u64::from(high - low) + 1;
    for _ in 0..1000 {
        let port = low + (random() % span) as u16;
        // The port after it too: scripts/etcd.sh takes the port after the client port for peers.
        if port_is_free(port) && port_is_free(port.saturating_add(1)) {
            return port;
        }
    }
    panic!("no free loopback port in {low}-{high} after 1000 tries");
}

/// Whether 127.0.0.1:`port` can be bound the way etcd binds it (SO_REUSEADDR, which Rust's listener sets
/// too): not by a listener, nor by a connection's local end, nor by a TIME-WAIT left by one.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Ports the kernel does not hand out on its own: from 10000 up to the start of its ephemeral range
/// (/proc/sys/net/ipv4/ip_local_port_range, 32768 by default), but at most 20000, clear of
/// scripts/etcd.sh's default ports (2379, 2479, and the cluster's 22379 and 32379). Where that range starts
/// lower, 10000-20000 all the same: the bind check still holds, only the protection from connections is
/// lost.
fn unclaimed_port_range() -> (u16, u16) {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_start.saturating_sub(1).min(20000);
    (10000, if high > 11000 { high } else { 20000 })
}

/// A random number, from the standard library's randomly keyed hasher.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// A throwaway single-member etcd bound to 127.0.0.1 only.
pub struct TestEtcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    /// Extra etcd flags, such as `--max-request-bytes=1024`.
    extra: Vec<String>,
    /// How the harness's own clients connect: TLS and a user for a [`SecureEtcd`], none otherwise.
    options: Option<ConnectOptions>,
}

impl TestEtcd {
    /// Starts a member and waits until it answers. Panics with the reason (and etcd's log) if it cannot.
    pub async fn start() -> TestEtcd {
        TestEtcd::start_with(&[]).await
    }

    /// [`TestEtcd::start`] with extra etcd flags, such as `--max-request-bytes=1024`.
    pub async fn start_with(extra: &[&str]) -> TestEtcd {
        TestEtcd::start_configured(extra, None).await
    }

    /// A member with extra flags whose clients use `options` (TLS for a secure member).
    async fn start_configured(extra: &[&str], options: Option<ConnectOptions>) -> TestEtcd {
        let binary = etcd_binary();
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("etcd-by-example-")
                .tempdir()
                .expect("the temp directory is writable");
            let mut etcd = TestEtcd {
                child: None,
                dir,
                client_port: free_port(),
                peer_port: free_port(),
                extra: extra.iter().map(|a| a.to_string()).collect(),
                options: options.clone(),
            };
            match etcd.spawn(&binary).await {
                Ok(()) => return etcd,
                // Most often a port race with another test: try again with new ports.
                Err(e) => last_error = e,
            }
        }
        panic!("could not start a test etcd: {last_error}");
    }

    /// `127.0.0.1:PORT`, the form a user passes to `--endpoints`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// A client connected to this member (as `root`, over TLS, for a secure one).
    pub async fn client(&self) -> Client {
        Client::connect([self.endpoint()], self.options.clone())
            .await
            .expect("a client for a healthy local member can be built")
    }

    /// Path of etcd's own log file, for failure messages.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The last lines of etcd's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Graceful stop (SIGTERM), waiting for the process to exit.
    pub fn stop(&mut self) {
        self.end_with(Signal::SIGTERM);
    }

    /// Crash (SIGKILL): no chance to clean up, as when a machine dies.
    pub fn kill(&mut self) {
        self.end_with(Signal::SIGKILL);
    }

    /// Freezes the member (SIGSTOP): its sockets stay open and accept connections, but nothing answers,
    /// as with a stalled VM or a long GC pause. Undo with [`TestEtcd::thaw`]; dropping also ends it.
    ///
    /// Returns once every thread of the process is stopped: `kill` only queues the signal, and a thread
    /// running on the other core could otherwise still answer a request sent right after.
    pub fn freeze(&self) {
        self.send(Signal::SIGSTOP);
        let child = self.child.as_ref().expect("the member is running");
        wait_until_stopped(child.id());
    }

    /// Lets a frozen member run again (SIGCONT), with its state as it was.
    pub fn thaw(&self) {
        self.send(Signal::SIGCONT);
    }

    fn send(&self, sig: Signal) {
        let child = self.child.as_ref().expect("the member is running");
        kill(Pid::from_raw(child.id() as i32), sig).expect("the member process exists");
    }

    /// Starts the member again on the same ports with the same data.
    pub async fn restart(&mut self) {
        self.end_with(Signal::SIGKILL);
        let binary = etcd_binary();
        // The ports were ours a moment ago; the kernel may still hold them briefly.
        let mut last_error = String::new();
        for _ in 0..5 {
            match self.spawn(&binary).await {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("could not restart the test etcd: {last_error}");
    }

    fn end_with(&mut self, sig: Signal) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, sig);
            // A frozen member only acts on SIGTERM once it runs again.
            let _ = kill(pid, Signal::SIGCONT);
            let _ = child.wait();
        }
    }

    async fn spawn(&mut self, binary: &Path) -> Result<(), String> {
        let scheme = if self.options.is_some() {
            "https"
        } else {
            "http"
        };
        let client_url = format!("{scheme}://127.0.0.1:{}", self.client_port);
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let data_dir = self.dir.path().join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open etcd log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot open etcd log: {e}"))?;
        let child = Command::new(binary)
            .arg("--name=test")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .args(&self.extra)
            // etcd reads ETCD_* variables as flags; keep the caller's settings out of a test member.
            .env_remove("ETCD_ENDPOINTS")
            .env_remove("ETCD_PASSWORD")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        self.child = Some(child);
        self.wait_healthy().await
    }

    async fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("etcd exited with {status}:\n{}", self.log_tail()));
                }
            }
            if self.answers().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "etcd did not become healthy within {START_LIMIT:?}:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn answers(&self) -> bool {
        let Ok(mut client) = Client::connect([self.endpoint()], self.options.clone()).await else {
            return false;
        };
        // A linearizable read needs a leader: it proves the member serves requests, not just that the
        // port is open.
        let probe = client.get("health", None);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), probe).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.end_with(Signal::SIGKILL);
    }
}

/// Waits (up to 5 s) until every thread of process `pid` is in the stopped state (`T` in
/// /proc/<pid>/task/*/stat), after a SIGSTOP.
pub fn wait_until_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state is the first field after the command name, which is in parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    };
    while !all_stopped() {
        assert!(
            Instant::now() < deadline,
            "process {pid} did not stop within 5 s of SIGSTOP"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value stored at `key`, or `None` if there is no such key.
pub async fn get_value(client: &mut Client, key: &str) -> Option<String> {
    let resp = client
        .get(key, None)
        .await
        .expect("a get against the healthy test member succeeds");
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// PUTs `key` and returns the store revision of the write, to compare with what a program printed.
pub async fn put(client: &mut Client, key: &str, value: &str) -> i64 {
    let resp = client
        .put(key, value, None)
        .await
        .expect("a put on the test member succeeds");
    resp.header().expect("a put reply has a header").revision()
}

/// DELETEs `key` and returns the store revision of the delete.
pub async fn delete(client: &mut Client, key: &str) -> i64 {
    let resp = client
        .delete(key, None)
        .await
        .expect("a delete on the test member succeeds");
    resp.header()
        .expect("a delete reply has a header")
        .revision()
}

/// Every key under `prefix`, in key order.
pub async fn keys_under(client: &mut Client, prefix: &str) -> Vec<String> {
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .expect("a get on the test member succeeds");
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

/// The lease `key` is attached to (0 for none), or `None` if the key does not exist.
pub async fn lease_of(client: &mut Client, key: &str) -> Option<i64> {
    let resp = client
        .get(key, None)
        .await
        .expect("a get on the test member succeeds");
    resp.kvs().first().map(|kv| kv.lease())
}

/// Whether lease `id` still exists (etcd answers TTL -1 for one that expired or was revoked).
pub async fn lease_exists(client: &mut Client, id: i64) -> bool {
    let resp = client
        .lease_time_to_live(id, None)
        .await
        .expect("time_to_live on the test member succeeds");
    resp.ttl() >= 0
}

/// The IDs of every lease the member holds.
pub async fn lease_ids(client: &mut Client) -> Vec<i64> {
    let resp = client
        .leases()
        .await
        .expect("listing leases on the test member succeeds");
    resp.leases().iter().map(|l| l.id()).collect()
}

/// The lease ID printed after the word `lease` in `line`, as 16 hex digits the way etcdctl prints it:
/// `1. granted lease 694d7a1b2c3e4f05 with a TTL of 5s` gives `0x694d7a1b2c3e4f05`.
pub fn lease_id_in(line: &str) -> i64 {
    let hex = line
        .split_whitespace()
        .skip_while(|w| *w != "lease")
        .nth(1)
        .unwrap_or_else(|| panic!("no lease ID in {line:?}"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("bad lease ID in {line:?}: {e}")) as i64
}

/// Whether process `pid` has installed a handler for `sig` (its bit in `SigCgt` of /proc/<pid>/status).
/// A test that sends Ctrl-C early waits for this first: before the handler is in place, SIGINT would
/// kill the program instead of asking it to stop.
pub fn catches(pid: i32, sig: Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig as u64 - 1)) != 0)
}

/// What a finished binary left behind.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A topic binary running against a test member. Dropping it kills the process.
pub struct Bin {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    started: Instant,
}

impl Bin {
    /// Starts `program` (use `env!("CARGO_BIN_EXE_<name>")`) with `ETCD_ENDPOINTS` set to `endpoint`.
    pub fn spawn(program: &str, endpoint: &str, args: &[&str]) -> Bin {
        Bin::spawn_with_env(program, endpoint, args, &[])
    }

    /// Like [`Bin::spawn`], with extra environment variables.
    pub fn spawn_with_env(
        program: &str,
        endpoint: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Bin {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .env_remove("ETCD_PASSWORD")
            .env("ETCD_ENDPOINTS", endpoint)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut stderr = child.stderr.take().expect("stderr was piped");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        Bin {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            started: Instant::now(),
        }
    }

    /// Runs `program` to completion, killing it if it takes longer than `limit`.
    pub async fn run(program: &str, endpoint: &str, args: &[&str], limit: Duration) -> Output {
        Bin::spawn(program, endpoint, args).finish(limit).await
    }

    /// The process ID, to send signals from elsewhere.
    pub fn pid(&self) -> i32 {
        self.child
            .id()
            .expect("the process is still ours until finish() or drop") as i32
    }

    /// Time since the process was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sends a signal (SIGINT is what Ctrl-C sends; SIGKILL cannot be caught).
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("the process is still running");
    }

    /// Waits until the program has installed its handler for `sig`, so that sending it asks the program to
    /// stop instead of killing it (a signal that comes earlier gets the default action). Panics after
    /// `limit`.
    pub async fn wait_until_catching(&self, sig: Signal, limit: Duration) {
        let pid = self.pid();
        eventually(
            &format!("the program to catch {sig}"),
            limit,
            || async move { catches(pid, sig).then_some(()) },
        )
        .await;
    }

    /// Waits for the next stdout line that contains `needle`, and returns it. Panics with everything
    /// printed so far if it does not come within `limit`, or if the process closes its output.
    pub async fn line_containing(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => {
                    // The process closed stdout, so it is ending: its stderr says why.
                    let stderr = match self.stderr.take() {
                        Some(task) => tokio::time::timeout(Duration::from_secs(5), task)
                            .await
                            .ok()
                            .and_then(|r| r.ok())
                            .unwrap_or_default(),
                        None => String::new(),
                    };
                    panic!(
                        "output ended before a line containing {needle:?}; stdout so far:\n{}\nstderr:\n{stderr}",
                        self.seen.join("\n")
                    )
                }
                Err(_) => panic!(
                    "no line containing {needle:?} within {limit:?}; stdout so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit (killing it after `limit`) and returns all it printed.
    pub async fn finish(mut self, limit: Duration) -> Output {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("waiting on our own child works"),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "process did not exit within {limit:?}; stdout so far:\n{}",
                    self.seen.join("\n")
                );
            }
        };
        while let Some(line) = self.lines.recv().await {
            self.seen.push(line);
        }
        let stderr = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        Output {
            status,
            stdout: self.seen.join("\n"),
            stderr,
        }
    }
}

/// Runs `program` with `args` and asserts that it refuses them: a clean failure ([`assert_clean_failure`])
/// whose stderr contains `why`. Returns the output for further checks.
pub async fn assert_refused(program: &str, endpoint: &str, args: &[&str], why: &str) -> Output {
    let out = Bin::run(program, endpoint, args, Duration::from_secs(30)).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains(why),
        "{args:?} should be refused with {why:?}: {out:#?}"
    );
    out
}

/// Asserts the project rule for Ctrl-C while a program is still connecting: against a frozen `etcd` (it
/// accepts connections but never answers) and a 20 s `--dial-timeout`, SIGINT stops the program within
/// 2 s, with exit 0 and a stdout line containing `says`. Leaves `etcd` thawed and returns the output, so
/// the caller can check that nothing was left in etcd.
pub async fn assert_ctrl_c_while_connecting_stops_at_once(
    etcd: &TestEtcd,
    program: &str,
    args: &[&str],
    says: &str,
) -> Output {
    etcd.freeze();
    // A long dial timeout: without listening for Ctrl-C, connecting would hold the program for 20 s.
    let args: Vec<&str> = ["--dial-timeout", "20"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let limit = Duration::from_secs(30);
    let bin = Bin::spawn(program, &etcd.endpoint(), &args);
    bin.wait_until_catching(Signal::SIGINT, limit).await;
    bin.signal(Signal::SIGINT);
    let signalled = Instant::now();
    let out = bin.finish(limit).await;
    let took = signalled.elapsed();
    etcd.thaw();
    assert!(took < Duration::from_secs(2), "took {took:?}: {out:#?}");
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stdout.contains(says), "expected {says:?}: {out:#?}");
    out
}

/// Runs `program` (with `args`) against a loopback port where nothing listens, with `--dial-timeout 2`, and
/// asserts the project rule: a clean failure within the dial timeout + 2 s that names the endpoint and says
/// how to start etcd. Returns the output for further checks.
pub async fn assert_fails_fast_on_dead_endpoint(program: &str, args: &[&str]) -> Output {
    let dead = format!("127.0.0.1:{}", free_port());
    let args: Vec<&str> = ["--dial-timeout", "2"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let started = Instant::now();
    let out = Bin::run(program, &dead, &args, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert_clean_failure(&out);
    assert!(took < Duration::from_secs(2 + 2), "took {took:?}: {out:#?}");
    assert!(out.stderr.contains(&dead), "names the endpoint: {out:#?}");
    assert!(
        out.stderr.contains("scripts/etcd.sh up"),
        "says what to do: {out:#?}"
    );
    out
}

/// Asserts the shape of a failed run: non-zero exit, exactly one `error:` line, no panic anywhere.
pub fn assert_clean_failure(out: &Output) {
    assert!(!out.status.success(), "expected a failure: {out:#?}");
    let error_lines = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .count();
    assert_eq!(error_lines, 1, "expected one `error:` line: {out:#?}");
    assert!(
        !out.stderr.contains("panicked") && !out.stdout.contains("panicked"),
        "the program panicked: {out:#?}"
    );
}
