//! `scripts/etcd.sh cluster ...`, run for real: each test gives the script its own state directory
//! (LOCAL_ETCD_DIR) and six free loopback ports (LOCAL_CLUSTER_CLIENT_PORTS, LOCAL_CLUSTER_PEER_PORTS), so no
//! test touches a developer's `.etcd/` or port 2379. A guard runs `cluster down` (and `down`) when a test
//! ends, then SIGKILLs any PID still recorded, so no member is left running even when a test fails.

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use etcd_client::Client;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use test_etcd::{
    etcd_sh, etcd_sh_command, eventually, free_port, get_value, run_script, ScriptRun, Signal,
};

/// `cluster up` and `start-member` wait up to 30 s for healthy members; stopping one waits up to 10 s
/// before SIGKILL.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// How long the two remaining members may take to elect a new leader and take a write.
const FAILOVER_LIMIT: Duration = Duration::from_secs(10);

/// Six distinct free loopback ports: three client ports, then three peer ports.
fn six_free_ports() -> ([u16; 3], [u16; 3]) {
    let mut seen = HashSet::new();
    let mut ports = Vec::new();
    while ports.len() < 6 {
        let port = free_port();
        if port != 2379 && port != 2380 && seen.insert(port) {
            ports.push(port);
        }
    }
    (
        [ports[0], ports[1], ports[2]],
        [ports[3], ports[4], ports[5]],
    )
}

/// The script's cluster in one state directory on six ports of its own.
struct Cluster {
    dir: tempfile::TempDir,
    client: [u16; 3],
    peer: [u16; 3],
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("etcd-sh-cluster-")
            .tempdir()
            .expect("the temp directory is writable");
        let (client, peer) = six_free_ports();
        Cluster { dir, client, peer }
    }

    fn join(ports: &[u16; 3]) -> String {
        ports.map(|p| p.to_string()).join(",")
    }

    /// `127.0.0.1:A,127.0.0.1:B,127.0.0.1:C`.
    fn endpoints(&self) -> String {
        self.client.map(|p| format!("127.0.0.1:{p}")).join(",")
    }

    /// Member `n`'s (1-3) endpoint.
    fn endpoint(&self, n: usize) -> String {
        format!("127.0.0.1:{}", self.client[n - 1])
    }

    fn member_dir(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("cluster/member{n}"))
    }

    /// The PID the script recorded for member `n`.
    fn recorded_pid(&self, n: usize) -> Option<i32> {
        read_pid(&self.member_dir(n).join("etcd.pid"))
    }

    /// The script with only our settings: nothing from the environment that would point elsewhere.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = etcd_sh_command(self.dir.path(), args);
        cmd.env("LOCAL_CLUSTER_CLIENT_PORTS", Self::join(&self.client))
            .env("LOCAL_CLUSTER_PEER_PORTS", Self::join(&self.peer));
        cmd
    }

    /// Runs the script, killing it after [`SCRIPT_LIMIT`].
    async fn run(&self, args: &[&str]) -> ScriptRun {
        run_script(self.command(args), args, SCRIPT_LIMIT).await
    }

    /// `cluster up`, which must succeed. When another process took one of our free ports before etcd
    /// bound it, starts afresh on new ports (at most three times).
    async fn up(&mut self) -> ScriptRun {
        let mut last = String::new();
        for _attempt in 0..3 {
            let run = self.run(&["cluster", "up"]).await;
            if run.code == Some(0) {
                return run;
            }
            let all = run.all();
            if !(all.contains("address already in use") || all.contains("cannot start:")) {
                panic!("cluster up failed:\n{all}");
            }
            last = all;
            let reset = self.run(&["cluster", "reset"]).await;
            assert_eq!(reset.code, Some(0), "{}", reset.all());
            (self.client, self.peer) = six_free_ports();
        }
        panic!("cluster up failed three times on a port race:\n{last}");
    }

    /// A client for member `n` alone.
    async fn client_of(&self, n: usize) -> Client {
        Client::connect([self.endpoint(n)], None)
            .await
            .expect("a client for one member")
    }

    /// The member (1-3) that leads, as member `n` sees it, and each member's ID.
    async fn leader_seen_by(&self, n: usize) -> usize {
        let mut client = self.client_of(n).await;
        let leader = client.status().await.expect("member status").leader();
        let members = client.member_list().await.expect("the member list");
        let name = members
            .members()
            .iter()
            .find(|m| m.id() == leader)
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| panic!("leader {leader} is not in {:?}", members.members()));
        name.strip_prefix("member")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("members are named member1..member3, not {name}"))
    }
}

impl Drop for Cluster {
    /// `cluster down` and `down`, bounded; then SIGKILL whatever PID is still recorded.
    fn drop(&mut self) {
        for args in [&["cluster", "down"][..], &["down"][..]] {
            if let Ok(mut child) = self.command(args).stdout(Stdio::null()).spawn() {
                let deadline = Instant::now() + SCRIPT_LIMIT;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let pidfiles = (1..=3)
            .map(|n| self.member_dir(n).join("etcd.pid"))
            .chain([self.dir.path().join("etcd.pid")]);
        for pidfile in pidfiles {
            if let Some(pid) = read_pid(&pidfile) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn read_pid(pidfile: &Path) -> Option<i32> {
    std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

async fn gone(pid: i32) {
    eventually(
        &format!("process {pid} is gone"),
        Duration::from_secs(10),
        || async move { (!alive(pid)).then_some(()) },
    )
    .await;
}

/// What `cluster status` says of one member: (number, pid if running, its role or state).
#[derive(Debug)]
struct MemberLine {
    n: usize,
    pid: Option<i32>,
    text: String,
}

/// The member lines of `cluster status`: `  member N  127.0.0.1:P  running (pid X), leader`.
fn member_lines(stdout: &str) -> Vec<MemberLine> {
    stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("  member ")?;
            let n = rest.split_whitespace().next()?.parse().ok()?;
            let pid = line
                .split("(pid ")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .and_then(|s| s.parse().ok());
            Some(MemberLine {
                n,
                pid,
                text: line.to_string(),
            })
        })
        .collect()
}

/// The member `cluster status` calls the leader; every other running member must be a follower.
fn leader_in_status(status: &ScriptRun) -> usize {
    let lines = member_lines(&status.stdout);
    let leaders: Vec<usize> = lines
        .iter()
        .filter(|l| l.text.ends_with(", leader"))
        .map(|l| l.n)
        .collect();
    assert_eq!(leaders.len(), 1, "one leader in:\n{}", status.all());
    leaders[0]
}

#[tokio::test]
async fn cluster_up_starts_three_healthy_members_and_prints_the_endpoints() {
    let mut cluster = Cluster::new();
    let up = cluster.up().await;
    let endpoints = cluster.endpoints();
    for line in [
        format!("ETCD_ENDPOINTS={endpoints} cargo run -p kv"),
        format!("export ETCDCTL_ENDPOINTS={endpoints}"),
        "cluster stop-member ".to_string(),
        "cluster start-member ".to_string(),
    ] {
        assert!(up.stdout.contains(&line), "no {line:?} in:\n{}", up.all());
    }

    // Three live processes, each with its own data directory and log, all members of one cluster.
    let pids: Vec<i32> = (1..=3)
        .map(|n| cluster.recorded_pid(n).expect("up recorded a PID"))
        .collect();
    assert!(pids.iter().all(|&pid| alive(pid)), "{pids:?}");
    for n in 1..=3 {
        assert!(cluster.member_dir(n).join("data/member").is_dir());
        assert!(cluster.member_dir(n).join("etcd.log").is_file());
        let mut alone = cluster.client_of(n).await;
        let members = alone.member_list().await.expect("the member list");
        assert_eq!(members.members().len(), 3, "{:?}", members.members());
    }
    // A write through one member is read back through another.
    let mut first = cluster.client_of(1).await;
    first.put("etcd-sh-cluster", "up", None).await.unwrap();
    let mut third = cluster.client_of(3).await;
    assert_eq!(
        get_value(&mut third, "etcd-sh-cluster").await.as_deref(),
        Some("up")
    );

    // `status` names each member's PID and the leader etcd itself reports.
    let status = cluster.run(&["cluster", "status"]).await;
    assert_eq!(status.code, Some(0), "{}", status.all());
    let lines = member_lines(&status.stdout);
    assert_eq!(
        lines.iter().map(|l| (l.n, l.pid)).collect::<Vec<_>>(),
        vec![(1, Some(pids[0])), (2, Some(pids[1])), (3, Some(pids[2]))],
        "{}",
        status.all()
    );
    assert_eq!(
        leader_in_status(&status),
        cluster.leader_seen_by(1).await,
        "{}",
        status.all()
    );
    assert!(status.stdout.contains("all 3 members are healthy"));

    // Idempotent: the second `up` finds the same three members and repeats where to point the examples.
    let again = cluster.up().await;
    assert!(again.stdout.contains("already running"), "{}", again.all());
    assert!(
        again
            .stdout
            .contains(&format!("ETCD_ENDPOINTS={endpoints} cargo run -p kv")),
        "{}",
        again.all()
    );
    let after: Vec<Option<i32>> = (1..=3).map(|n| cluster.recorded_pid(n)).collect();
    assert_eq!(after, pids.iter().copied().map(Some).collect::<Vec<_>>());
}

#[tokio::test]
async fn stop_member_keeps_the_cluster_serving_and_start_member_rejoins() {
    let mut cluster = Cluster::new();
    cluster.up().await;

    // Stop the leader: the harder case, the other two must elect a new one before they take writes.
    let status = cluster.run(&["cluster", "status"]).await;
    let stopped = leader_in_status(&status);
    let old_pid = cluster.recorded_pid(stopped).expect("a PID");
    let member_id = {
        let mut alone = cluster.client_of(stopped).await;
        alone.status().await.unwrap().header().unwrap().member_id()
    };
    let n = stopped.to_string();
    let stop = cluster.run(&["cluster", "stop-member", &n]).await;
    assert_eq!(stop.code, Some(0), "{}", stop.all());
    assert!(
        stop.stdout
            .contains(&format!("stopped member {n} (pid {old_pid}, the leader)")),
        "{}",
        stop.all()
    );
    assert!(stop.stdout.contains("keeps serving"), "{}", stop.all());
    gone(old_pid).await;
    assert!(TcpStream::connect(("127.0.0.1", cluster.client[stopped - 1])).is_err());

    let degraded = cluster.run(&["cluster", "status"]).await;
    assert_eq!(degraded.code, Some(1), "{}", degraded.all());
    let lines = member_lines(&degraded.stdout);
    assert!(
        lines[stopped - 1].text.contains("not running") && lines[stopped - 1].pid.is_none(),
        "{}",
        degraded.all()
    );
    assert!(
        degraded.stdout.contains("2 of 3 members are healthy"),
        "{}",
        degraded.all()
    );

    // Write through the two remaining members, retrying while they elect a new leader.
    let others: Vec<String> = (1..=3)
        .filter(|&m| m != stopped)
        .map(|m| cluster.endpoint(m))
        .collect();
    let survivors = Client::connect(others, None).await.unwrap();
    eventually(
        "a write through the remaining members succeeds",
        FAILOVER_LIMIT,
        || {
            let mut survivors = survivors.clone();
            async move {
                let put = survivors.put("written-while-down", "yes", None);
                tokio::time::timeout(Duration::from_secs(2), put)
                    .await
                    .ok()?
                    .ok()
            }
        },
    )
    .await;

    // Started again on its own data: the same member rejoins and catches up.
    let start = cluster.run(&["cluster", "start-member", &n]).await;
    assert_eq!(start.code, Some(0), "{}", start.all());
    assert!(
        start.stdout.contains(&format!("member {n} (pid ")) && start.stdout.contains("rejoined"),
        "{}",
        start.all()
    );
    let new_pid = cluster
        .recorded_pid(stopped)
        .expect("start-member recorded a PID");
    assert!(new_pid != old_pid && alive(new_pid));

    // The restarted member alone, with a linearizable read, has the write it missed.
    let mut rejoined = cluster.client_of(stopped).await;
    assert_eq!(
        get_value(&mut rejoined, "written-while-down")
            .await
            .as_deref(),
        Some("yes")
    );
    let status = rejoined.status().await.unwrap();
    assert_eq!(status.header().unwrap().member_id(), member_id);
    assert_eq!(rejoined.member_list().await.unwrap().members().len(), 3);

    let healthy = cluster.run(&["cluster", "status"]).await;
    assert_eq!(healthy.code, Some(0), "{}", healthy.all());
}

#[tokio::test]
async fn cluster_up_refuses_while_the_single_member_runs() {
    let mut cluster = Cluster::new();
    // `scripts/etcd.sh up` in the same state directory, on ports of its own (not 2379).
    let (single, single_peer) = (free_port(), free_port());
    let mut up_single = cluster.command(&["up"]);
    up_single
        .env("LOCAL_ETCD_PORT", single.to_string())
        .env("LOCAL_ETCD_PEER_PORT", single_peer.to_string());
    let single_up = run_script(up_single, &["up"], SCRIPT_LIMIT).await;
    assert_eq!(single_up.code, Some(0), "{}", single_up.all());
    let single_pid = read_pid(&cluster.dir.path().join("etcd.pid")).expect("up recorded a PID");

    let refused = cluster.run(&["cluster", "up"]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    assert!(
        refused.stderr.contains(&format!(
            "the single member of `{}` runs (pid {single_pid})",
            format_args!("{} up", etcd_sh().display())
        )),
        "{}",
        refused.all()
    );
    // The exact command that stops it, on a line of its own.
    let stop_command = format!(
        "LOCAL_ETCD_DIR={} {} down",
        cluster.dir.path().display(),
        etcd_sh().display()
    );
    assert!(
        refused.stderr.lines().any(|l| l.trim() == stop_command),
        "no line {stop_command:?} in:\n{}",
        refused.all()
    );
    assert!((1..=3).all(|n| cluster.recorded_pid(n).is_none()));
    assert!(alive(single_pid), "the single member is left alone");

    // That command works, and then the cluster starts.
    let mut stop = std::process::Command::new("bash");
    stop.args(["-c", &stop_command])
        .env_remove("LOCAL_ETCD_PORT")
        .env_remove("LOCAL_ETCD_DIR")
        .env("PATH", test_etcd::path_with_test_etcd())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stopped = run_script(stop, &["down"], SCRIPT_LIMIT).await;
    assert_eq!(stopped.code, Some(0), "{}", stopped.all());
    gone(single_pid).await;
    cluster.up().await;

    // The other way round: the single `up` refuses while the cluster runs, and says how to stop it.
    let mut up_single = cluster.command(&["up"]);
    up_single.env("LOCAL_ETCD_PORT", single.to_string());
    let refused = run_script(up_single, &["up"], SCRIPT_LIMIT).await;
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    let cluster_down = format!(
        "LOCAL_ETCD_DIR={} {} cluster down",
        cluster.dir.path().display(),
        etcd_sh().display()
    );
    assert!(
        refused.stderr.lines().any(|l| l.trim() == cluster_down),
        "no line {cluster_down:?} in:\n{}",
        refused.all()
    );
    assert!(read_pid(&cluster.dir.path().join("etcd.pid")).is_none());
}

#[tokio::test]
async fn cluster_down_is_idempotent() {
    let mut cluster = Cluster::new();
    // Nothing to stop yet: still success.
    let nothing = cluster.run(&["cluster", "down"]).await;
    assert_eq!(nothing.code, Some(0), "{}", nothing.all());
    assert_eq!(
        nothing.stdout.matches("is not running").count(),
        3,
        "{}",
        nothing.all()
    );

    cluster.up().await;
    let pids: Vec<i32> = (1..=3)
        .map(|n| cluster.recorded_pid(n).expect("up recorded a PID"))
        .collect();
    let down = cluster.run(&["cluster", "down"]).await;
    assert_eq!(down.code, Some(0), "{}", down.all());
    for (i, pid) in pids.iter().enumerate() {
        assert!(
            down.stdout
                .contains(&format!("stopped member {} (pid {pid}", i + 1)),
            "{}",
            down.all()
        );
        gone(*pid).await;
        assert!(TcpStream::connect(("127.0.0.1", cluster.client[i])).is_err());
        assert!(cluster.recorded_pid(i + 1).is_none());
        assert!(
            cluster.member_dir(i + 1).join("data/member").is_dir(),
            "down keeps the data"
        );
    }

    let again = cluster.run(&["cluster", "down"]).await;
    assert_eq!(again.code, Some(0), "{}", again.all());
    assert_eq!(
        again.stdout.matches("is not running").count(),
        3,
        "{}",
        again.all()
    );

    let status = cluster.run(&["cluster", "status"]).await;
    assert_eq!(status.code, Some(1), "{}", status.all());
    assert!(
        status.stdout.contains("the cluster is stopped"),
        "{}",
        status.all()
    );
}

#[tokio::test]
async fn cluster_up_on_a_taken_port_explains_the_bind_error_and_leaves_nothing_behind() {
    let cluster = Cluster::new();
    // Another program holds member 2's peer port: etcd exits with "bind: address already in use".
    let taken = cluster.peer[1];
    let holder = TcpListener::bind(("127.0.0.1", taken)).expect("the free port can be bound");
    let run = cluster.run(&["cluster", "up"]).await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    let explained = format!(
        "member 2 cannot start: etcd could not bind 127.0.0.1:{taken} (bind: address already in use)"
    );
    assert!(run.stderr.contains(&explained), "{}", run.all());
    // The whole command for other ports: six of them, none the taken one.
    let command = run
        .stderr
        .lines()
        .find(|l| {
            l.contains("LOCAL_CLUSTER_CLIENT_PORTS=") && l.trim_end().ends_with(" cluster up")
        })
        .unwrap_or_else(|| panic!("no command for other ports in:\n{}", run.all()));
    let ports: Vec<u16> = ["LOCAL_CLUSTER_CLIENT_PORTS=", "LOCAL_CLUSTER_PEER_PORTS="]
        .iter()
        .flat_map(|var| {
            let list = command.split(var).nth(1).and_then(|r| r.split(' ').next());
            list.unwrap_or_default()
                .split(',')
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u16>>()
        })
        .collect();
    assert_eq!(ports.len(), 6, "{command}");
    assert!(!ports.contains(&taken), "{command}");
    // The new cluster that did not come up is stopped and wiped, so the next `cluster up` starts clean.
    assert!(
        run.stderr.contains("the new cluster did not come up"),
        "{}",
        run.all()
    );
    assert!(
        !cluster.dir.path().join("cluster").exists(),
        "{}",
        run.all()
    );
    drop(holder);
}
