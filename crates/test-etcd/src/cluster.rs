//! [`TestCluster`]: a real multi-member etcd cluster on loopback, for the faults that only a cluster has —
//! a member (the leader included) that dies while clients keep working through the others.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::Client;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::{etcd_binary, free_port, Signal, START_LIMIT};

/// Raft timing for test clusters, in milliseconds. etcd's defaults (heartbeat 100 ms, election timeout
/// 1000 ms) are tuned for real networks; on loopback a follower notices a dead leader after one election
/// timeout, so 500 ms makes a new leader appear well within a second after a kill, which keeps every
/// cluster test short. The election timeout stays 10 heartbeats (etcd's own ratio), so a busy 2-core
/// machine that delays a few heartbeats still does not cause needless elections.
const HEARTBEAT_MS: u32 = 50;
const ELECTION_TIMEOUT_MS: u32 = 500;

/// How long [`TestCluster::leader`] waits for the members to agree on a leader.
const LEADER_LIMIT: Duration = Duration::from_secs(10);

/// One member of a [`TestCluster`].
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
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
}

/// A throwaway etcd cluster of several members, all bound to 127.0.0.1 on free ports, sharing one
/// temporary directory (a data directory and a log per member). Members can be killed, stopped, frozen
/// and restarted one by one. Dropping it kills every member and removes the directory, even when the
/// test panics.
pub struct TestCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

impl TestCluster {
    /// Starts `n` members (use 3) as a new cluster and waits until every one serves linearizable reads.
    /// Panics with the reason (and the members' logs) if it cannot.
    pub async fn start(n: usize) -> TestCluster {
        assert!(n >= 1, "a cluster needs at least one member");
        let binary = etcd_binary();
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("etcd-by-example-cluster-")
                .tempdir()
                .expect("the temp directory is writable");
            let members = (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: free_port(),
                    peer_port: free_port(),
                    child: None,
                })
                .collect();
            let mut cluster = TestCluster { dir, members };
            match cluster.spawn_all(&binary).await {
                Ok(()) => return cluster,
                // Most often a port race with another test: try again with new ports (dropping the
                // half-started cluster kills its members).
                Err(e) => last_error = e,
            }
        }
        panic!("could not start a test etcd cluster: {last_error}");
    }

    /// How many members the cluster was started with (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's endpoint, comma-separated (`127.0.0.1:P,127.0.0.1:Q,...`), the form `ETCD_ENDPOINTS`
    /// and `--endpoints` take.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Member::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `i`'s endpoint, `127.0.0.1:PORT`.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].endpoint()
    }

    /// A plain etcd-client over every member. etcd-client does not skip a dead member (its issue #39),
    /// so use [`TestCluster::client_of`] for a member known to be up once one is down.
    pub async fn client(&self) -> Client {
        let endpoints: Vec<String> = self.members.iter().map(Member::endpoint).collect();
        Client::connect(endpoints, None)
            .await
            .expect("a client for local members can be built")
    }

    /// A client to member `i` alone.
    pub async fn client_of(&self, i: usize) -> Client {
        Client::connect([self.endpoint(i)], None)
            .await
            .expect("a client for a local member can be built")
    }

    /// Whether member `i`'s process is ours and running (not killed or stopped; a frozen one counts).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Index of the current leader. Asks each running member for its status and takes the one that says
    /// it is the leader itself (its own member ID in the header equals the leader ID it reports); with
    /// several such answers (an old leader that has not noticed yet), the one with the highest Raft term.
    /// Waits up to 10 s for an election in progress; panics if there is still no leader then.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + LEADER_LIMIT;
        loop {
            let mut best: Option<(u64, usize)> = None;
            for i in 0..self.members.len() {
                if !self.is_running(i) {
                    continue;
                }
                let Some((member_id, leader_id, term)) = self.status_of(i).await else {
                    continue;
                };
                if leader_id != 0 && leader_id == member_id && best.map_or(true, |(t, _)| term > t)
                {
                    best = Some((term, i));
                }
            }
            if let Some((_, i)) = best {
                return i;
            }
            if Instant::now() > deadline {
                panic!(
                    "no member of the cluster reports being the leader within {LEADER_LIMIT:?}:\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (own member ID, leader ID, Raft term) as member `i` reports them, or `None` if it does not answer
    /// within a second.
    async fn status_of(&self, i: usize) -> Option<(u64, u64, u64)> {
        let ask = async {
            let mut client = Client::connect([self.endpoint(i)], None).await.ok()?;
            let status = client.status().await.ok()?;
            let member_id = status.header()?.member_id();
            Some((member_id, status.leader(), status.raft_term()))
        };
        tokio::time::timeout(Duration::from_secs(1), ask)
            .await
            .ok()
            .flatten()
    }

    /// Crash member `i` (SIGKILL): no chance to clean up, as when a machine dies.
    pub fn kill(&mut self, i: usize) {
        self.members[i].end_with(Signal::SIGKILL);
    }

    /// Graceful stop of member `i` (SIGTERM), waiting for the process to exit.
    pub fn stop(&mut self, i: usize) {
        self.members[i].end_with(Signal::SIGTERM);
    }

    /// Freezes member `i` (SIGSTOP): its sockets stay open, but nothing answers. Undo with
    /// [`TestCluster::thaw`]. Returns once the member is really stopped.
    pub fn freeze(&self, i: usize) {
        self.send(i, Signal::SIGSTOP);
        let child = self.members[i]
            .child
            .as_ref()
            .expect("the member is running");
        crate::wait_until_stopped(child.id());
    }

    /// Lets a frozen member run again (SIGCONT).
    pub fn thaw(&self, i: usize) {
        self.send(i, Signal::SIGCONT);
    }

    fn send(&self, i: usize, sig: Signal) {
        let child = self.members[i]
            .child
            .as_ref()
            .expect("the member is running");
        kill(Pid::from_raw(child.id() as i32), sig).expect("the member process exists");
    }

    /// Starts member `i` again (killing it first if it still runs) on the same ports with the same data,
    /// and waits until it has rejoined: it serves a linearizable read, which needs a leader and needs the
    /// member to have applied everything committed before the read.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        let binary = etcd_binary();
        let mut last_error = String::new();
        // The ports were ours a moment ago; the kernel may still hold them briefly.
        for _ in 0..5 {
            let started = self.spawn(&binary, i);
            let result = match started {
                Ok(()) => self.wait_healthy(i, Instant::now() + START_LIMIT).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return,
                Err(e) => last_error = e,
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("could not restart cluster member {i}: {last_error}");
    }

    /// Path of member `i`'s etcd log.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// The last lines of member `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn log_tails(&self) -> String {
        (0..self.members.len())
            .map(|i| {
                format!(
                    "--- member {i} ({}):\n{}",
                    self.endpoint(i),
                    self.log_tail(i)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn spawn_all(&mut self, binary: &Path) -> Result<(), String> {
        for i in 0..self.members.len() {
            self.spawn(binary, i)?;
        }
        // A new cluster has no leader until a quorum of members has started, so all are spawned first and
        // then awaited, under one deadline.
        let deadline = Instant::now() + START_LIMIT;
        for i in 0..self.members.len() {
            self.wait_healthy(i, deadline).await?;
        }
        Ok(())
    }

    /// Runs member `i` with the flags of a new cluster. On a restart the data directory already exists,
    /// and etcd then ignores the `--initial-*` flags and rejoins with the membership stored there.
    fn spawn(&mut self, binary: &Path, i: usize) -> Result<(), String> {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        // Unique per cluster, so members of two test clusters can never join each other if a port is
        // reused.
        let token = self
            .dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "etcd-by-example".into());
        let log_path = self.log_path(i);
        let member = &self.members[i];
        let client_url = format!("http://{}", member.endpoint());
        let peer_url = member.peer_url();
        let data_dir = self.dir.path().join(&member.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open etcd log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot open etcd log: {e}"))?;
        let child = Command::new(binary)
            .arg(format!("--name={}", member.name))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={token}"))
            .arg(format!("--heartbeat-interval={HEARTBEAT_MS}"))
            .arg(format!("--election-timeout={ELECTION_TIMEOUT_MS}"))
            // etcd reads ETCD_* variables as flags; keep the caller's settings out of a test member.
            .env_remove("ETCD_ENDPOINTS")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    async fn wait_healthy(&mut self, i: usize, deadline: Instant) -> Result<(), String> {
        loop {
            if let Some(child) = self.members[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.members[i].child = None;
                    return Err(format!(
                        "member {i} exited with {status}:\n{}",
                        self.log_tail(i)
                    ));
                }
            }
            if self.answers(i).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "member {i} did not become healthy within {START_LIMIT:?}:\n{}",
                    self.log_tails()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn answers(&self, i: usize) -> bool {
        let Ok(mut client) = Client::connect([self.endpoint(i)], None).await else {
            return false;
        };
        // A linearizable read needs a leader and this member caught up: it proves the member serves
        // requests as part of the cluster, not just that its port is open.
        let probe = client.get("health", None);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), probe).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.end_with(Signal::SIGKILL);
        }
    }
}
