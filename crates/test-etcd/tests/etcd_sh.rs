//! `scripts/etcd.sh`, run for real: each test gives it its own free loopback ports (LOCAL_ETCD_PORT,
//! LOCAL_ETCD_PEER_PORT) and its own state directory (LOCAL_ETCD_DIR), so no test touches a developer's
//! `.etcd/` or port 2379. A guard runs `down` when a test ends, so no member is left running.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;
use test_etcd::{
    etcd_sh_command, eventually, free_port, get_value, run_script, ScriptRun, Signal, TestEtcd,
};

/// `up` waits up to 30 s for a healthy member; `down` up to 10 s before SIGKILL.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// The script with one state directory and one client port (and optionally a peer port).
struct Script {
    dir: tempfile::TempDir,
    port: u16,
    peer: Option<u16>,
}

impl Script {
    fn new(port: u16) -> Script {
        let dir = tempfile::Builder::new()
            .prefix("etcd-sh-")
            .tempdir()
            .expect("the temp directory is writable");
        Script {
            dir,
            port,
            peer: None,
        }
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("etcd.pid")
    }

    /// The command with only our settings: nothing from the environment that would point elsewhere.
    fn command(&self, port: Option<u16>, args: &[&str]) -> std::process::Command {
        let mut cmd = etcd_sh_command(self.dir.path(), args);
        if let Some(port) = port {
            cmd.env("LOCAL_ETCD_PORT", port.to_string());
        }
        if let Some(peer) = self.peer {
            cmd.env("LOCAL_ETCD_PEER_PORT", peer.to_string());
        }
        cmd
    }

    /// Runs the script on this guard's client port.
    async fn run(&self, args: &[&str]) -> ScriptRun {
        self.run_on(Some(self.port), args).await
    }

    /// Runs the script with LOCAL_ETCD_PORT set to `port` (or unset), killing it after [`SCRIPT_LIMIT`].
    async fn run_on(&self, port: Option<u16>, args: &[&str]) -> ScriptRun {
        run_script(self.command(port, args), args, SCRIPT_LIMIT).await
    }

    /// `up`, which must succeed. Other tests probe free ports at the same time (free_port() binds each
    /// one it tries for a moment), so one of this member's ports can be held just when etcd binds it: etcd
    /// then exits with "address already in use" before it wrote anything, and this runs `up` again on the
    /// same ports (at most three times). (Ports from free_port() are below the kernel's ephemeral range, so
    /// no program's outgoing connection takes them meanwhile.)
    async fn up(&self) -> ScriptRun {
        let mut last = String::new();
        for _attempt in 0..3 {
            let run = self.run(&["up"]).await;
            if run.code == Some(0) {
                return run;
            }
            let all = run.all();
            assert!(all.contains("address already in use"), "up failed:\n{all}");
            last = all;
        }
        panic!("up failed three times on a port race:\n{last}");
    }

    /// The PID the script recorded for the member it started.
    fn recorded_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pidfile())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for Script {
    /// `down`, bounded; then SIGKILL whatever PID is still recorded, so a failed test leaves nothing behind.
    fn drop(&mut self) {
        if let Ok(mut child) = self.command(Some(self.port), &["down"]).spawn() {
            let deadline = Instant::now() + SCRIPT_LIMIT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = self.recorded_pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("endpoints are 127.0.0.1:PORT")
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// The number that follows `key` in `text` (as in `LOCAL_ETCD_PORT=22379` or `peer port 2380`).
fn number_after(text: &str, key: &str) -> Option<u16> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Asserts that `text` names a complete command to start on other ports: both ports, free right now and
/// different from `taken`, and the ETCD_ENDPOINTS line for the examples on that client port.
fn assert_complete_other_ports_hint(text: &str, taken: u16) {
    let line = text
        .lines()
        .find(|l| l.contains("LOCAL_ETCD_PORT=") && l.trim_end().ends_with(" up"))
        .unwrap_or_else(|| panic!("no command to start on other ports in:\n{text}"));
    let client = number_after(line, "LOCAL_ETCD_PORT=").expect("the hint names a client port");
    let peer = number_after(line, "LOCAL_ETCD_PEER_PORT=")
        .unwrap_or_else(|| panic!("the hint names no peer port, so it would fail on it: {line}"));
    assert!(client != taken && peer != taken && client != peer, "{line}");
    assert!(
        text.contains(&format!(
            "ETCD_ENDPOINTS=127.0.0.1:{client} cargo run -p kv"
        )),
        "no ETCD_ENDPOINTS line for port {client} in:\n{text}"
    );
}

#[tokio::test]
async fn usage_without_a_command_is_the_header_comment_without_code() {
    let script_guard = Script::new(free_port());
    let run = script_guard.run(&[]).await;
    assert_eq!(run.code, Some(2), "{}", run.all());
    let usage = run.stderr.trim_end();
    for command in ["up", "down", "status", "logs", "reset"] {
        assert!(
            usage.contains(&format!("scripts/etcd.sh {command}")),
            "usage lacks {command}:\n{usage}"
        );
    }
    assert!(
        usage
            .lines()
            .last()
            .unwrap_or_default()
            .contains("docker-compose.yml"),
        "usage must end with the header's last line:\n{usage}"
    );
    assert!(
        !usage.contains("set -euo pipefail") && !usage.contains("#!"),
        "usage shows code:\n{usage}"
    );

    let help = script_guard.run(&["--help"]).await;
    assert_eq!(help.code, Some(0), "{}", help.all());
    assert_eq!(help.stdout.trim_end(), usage);
}

#[tokio::test]
async fn up_on_a_port_held_by_another_program_fails_with_a_complete_command() {
    // A port from free_port(), whose next port (the peer port) is free too: etcd fails on the client port.
    let listener = TcpListener::bind(("127.0.0.1", free_port())).expect("a loopback listener");
    assert_up_refuses_a_taken_port(listener.local_addr().unwrap().port()).await;
    drop(listener);
}

/// `up` on client port `port` fails because port `taken` is: etcd's own "bind: address already in use",
/// explained with the port, `which` port it is and the variable that sets it, and a complete command on
/// other ports; nothing is left running. Returns the run.
async fn assert_up_explains_a_taken_port(port: u16, taken: u16, which: &str) -> ScriptRun {
    let script = Script::new(port);
    let run = script.run(&["up"]).await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    for text in [
        format!("etcd could not bind 127.0.0.1:{taken} (bind: address already in use)"),
        format!("port {taken} is taken"),
        which.to_string(),
    ] {
        assert!(run.stderr.contains(&text), "no {text:?} in:\n{}", run.all());
    }
    assert_complete_other_ports_hint(&run.stderr, taken);
    assert_eq!(script.recorded_pid(), None, "nothing was started");
    run
}

/// `up` on client port `taken` fails: no etcd answers there, and etcd cannot bind it.
async fn assert_up_refuses_a_taken_port(taken: u16) {
    let which = "It is the client port, which LOCAL_ETCD_PORT sets";
    let run = assert_up_explains_a_taken_port(taken, taken, which).await;
    let not_etcd = format!("port {taken} is taken by something that is not etcd");
    assert!(run.stderr.contains(&not_etcd), "{}", run.all());
}

/// A port `p` from free_port(), and an open connection from 127.0.0.1:`p + offset` to a loopback
/// listener, with the listener's end accepted: nothing listens at `p + offset`, yet nothing can bind it
/// while the connection is open.
///
/// The connection's socket binds as an outgoing connection does, without SO_REUSEADDR (with it, etcd's
/// listener could bind the port all the same). So it is refused by a TIME-WAIT that an earlier test's
/// etcd left on the port: that etcd's listener had SO_REUSEADDR, and its TIME-WAITs keep it, so
/// free_port()'s check (with SO_REUSEADDR, as etcd binds) lets the port through. Then take another port.
/// (Seen once in a CI rehearsal: "the free port can be bound: Address already in use".)
async fn connection_from(offset: u16) -> (u16, (tokio::net::TcpStream, tokio::net::TcpStream)) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback listener");
    for _ in 0..50 {
        let port = free_port();
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        match socket.bind(([127, 0, 0, 1], port + offset).into()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => panic!("bind 127.0.0.1:{}: {e}", port + offset),
        }
        let ours = socket
            .connect(listener.local_addr().expect("the listener has an address"))
            .await
            .expect("the loopback connection opens");
        let (theirs, _) = listener.accept().await.expect("the listener accepts");
        return (port, (ours, theirs));
    }
    panic!("50 free ports in a row could not be bound without SO_REUSEADDR");
}

#[tokio::test]
async fn up_on_a_port_that_is_a_connections_local_end_fails_with_a_complete_command() {
    // Nothing listens there, so a check that only looks for listeners would take it for free, yet etcd
    // cannot bind it: the script reports etcd's own bind error. (The port is from free_port() so that
    // the next one, the peer port, is free: the error is the client port's.)
    let (taken, connection) = connection_from(0).await;
    assert!(
        TcpStream::connect(("127.0.0.1", taken)).is_err(),
        "nothing listens at {taken}"
    );
    assert_up_refuses_a_taken_port(taken).await;
    drop(connection);
}

/// `up` on client port `port`, whose next port (the default peer port) is taken, fails, and the command
/// it prints keeps the client port and moves the peer port.
async fn assert_up_explains_a_taken_peer_port(port: u16) {
    let which = "It is the peer port, which LOCAL_ETCD_PEER_PORT sets";
    let run = assert_up_explains_a_taken_port(port, port + 1, which).await;
    let hint = run.stderr.lines().find(|l| l.contains("LOCAL_ETCD_PORT="));
    assert!(
        hint.is_some_and(|l| number_after(l, "LOCAL_ETCD_PORT=") == Some(port)),
        "the command keeps the client port {port}:\n{}",
        run.all()
    );
}

#[tokio::test]
async fn up_on_a_peer_port_that_is_a_connections_local_end_explains_the_bind_error() {
    // free_port() makes sure the port after it is free too; a connection then takes it.
    let (port, connection) = connection_from(1).await;
    assert_up_explains_a_taken_peer_port(port).await;
    drop(connection);
}

#[tokio::test]
async fn up_with_only_a_client_port_uses_the_next_port_for_peers_and_prints_the_endpoints() {
    let port = free_port();
    let script = Script::new(port);

    let run = script.up().await;
    let peer = number_after(&run.stdout, "peer port ").expect("up says which peer port it uses");
    assert_eq!(peer, port + 1, "the peer port is the client port + 1");
    assert!(
        TcpStream::connect(("127.0.0.1", peer)).is_ok(),
        "etcd listens on the peer port it announced:\n{}",
        run.all()
    );
    for line in [
        format!("ETCD_ENDPOINTS=127.0.0.1:{port} cargo run -p kv"),
        format!("export ETCDCTL_ENDPOINTS=127.0.0.1:{port}"),
    ] {
        assert!(run.stdout.contains(&line), "no {line:?} in:\n{}", run.all());
    }
    assert!(
        !run.stdout.contains("try: cargo run -p kv"),
        "a bare `cargo run -p kv` would go to 2379:\n{}",
        run.all()
    );

    // The member really serves on that port.
    let mut client = etcd_client::Client::connect([format!("127.0.0.1:{port}")], None)
        .await
        .expect("a client for the script's member");
    client.put("etcd-sh", "up", None).await.expect("a put");
    assert_eq!(
        get_value(&mut client, "etcd-sh").await.as_deref(),
        Some("up")
    );

    // Idempotent: the second `up` finds it and repeats where to point the examples.
    let again = script.up().await;
    assert!(again.stdout.contains("already running"), "{}", again.all());
    assert!(
        again
            .stdout
            .contains(&format!("ETCD_ENDPOINTS=127.0.0.1:{port} cargo run -p kv")),
        "{}",
        again.all()
    );
}

#[tokio::test]
async fn up_on_a_peer_port_held_by_another_program_explains_the_bind_error() {
    // A client port whose next port we can hold with a plain listener.
    let (port, blocker) = loop {
        let port = free_port();
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port + 1)) {
            break (port, listener);
        }
    };
    assert_up_explains_a_taken_peer_port(port).await;
    drop(blocker);
}

#[tokio::test]
async fn up_with_both_ports_given_uses_them() {
    let mut script = Script::new(free_port());
    script.peer = Some(free_port());
    let run = script.up().await;
    let peer = script.peer.unwrap();
    assert!(
        run.stdout
            .contains(&format!("client port {}, peer port {peer}", script.port)),
        "{}",
        run.all()
    );
    assert!(TcpStream::connect(("127.0.0.1", peer)).is_ok());
}

#[tokio::test]
async fn status_says_when_the_etcd_on_the_port_was_not_started_by_the_script() {
    let other = TestEtcd::start().await;
    let port = port_of(&other.endpoint());
    let script = Script::new(port);

    let status = script.run(&["status"]).await;
    assert!(
        status
            .stdout
            .contains("no etcd started by this script is running"),
        "{}",
        status.all()
    );
    assert!(
        status.stdout.contains(&format!(
            "the etcd answering at 127.0.0.1:{port} was NOT started by this script"
        )),
        "{}",
        status.all()
    );
    assert!(
        !status.stdout.contains("running (pid"),
        "no PID next to another server's table:\n{}",
        status.all()
    );

    // `up` leaves it alone, says how to use it or where else to start, and starts nothing.
    let up = script.run(&["up"]).await;
    assert_eq!(up.code, Some(0), "{}", up.all());
    assert!(up.stdout.contains("did not start"), "{}", up.all());
    assert!(
        up.stdout
            .contains(&format!("ETCD_ENDPOINTS=127.0.0.1:{port} cargo run -p kv")),
        "{}",
        up.all()
    );
    assert_complete_other_ports_hint(&up.stdout, port);
    assert_eq!(script.recorded_pid(), None);

    // `down` does not stop a member it did not start.
    let down = script.run(&["down"]).await;
    assert_eq!(down.code, Some(0), "{}", down.all());
    assert!(
        down.stdout.contains("not started by this script"),
        "{}",
        down.all()
    );
    let mut client = other.client().await;
    client
        .put("still", "here", None)
        .await
        .expect("the other etcd still serves");
}

#[tokio::test]
async fn status_does_not_mix_the_scripts_member_with_another_etcd() {
    let other = TestEtcd::start().await;
    let other_port = port_of(&other.endpoint());
    let script = Script::new(free_port());
    script.up().await;
    let pid = script.recorded_pid().expect("up recorded a PID");

    // Asked about the other etcd's port: our member is elsewhere, and the table there is not ours.
    let status = script.run_on(Some(other_port), &["status"]).await;
    assert_eq!(status.code, Some(0), "{}", status.all());
    assert!(
        status.stdout.contains(&format!(
            "this script's etcd (pid {pid}) runs at 127.0.0.1:{}, not at 127.0.0.1:{other_port}",
            script.port
        )),
        "{}",
        status.all()
    );
    assert!(
        status.stdout.contains("was NOT started by this script"),
        "{}",
        status.all()
    );

    // Without LOCAL_ETCD_PORT, status finds our member on the port it really uses.
    let ours = script.run_on(None, &["status"]).await;
    assert_eq!(ours.code, Some(0), "{}", ours.all());
    assert!(
        ours.stdout
            .contains(&format!("running (pid {pid}) at 127.0.0.1:{}", script.port)),
        "{}",
        ours.all()
    );
    assert!(ours.stdout.contains(&format!("127.0.0.1:{} ", script.port)));
}

#[tokio::test]
async fn down_stops_what_up_started_and_is_idempotent() {
    let script = Script::new(free_port());
    script.up().await;
    let pid = script.recorded_pid().expect("up recorded a PID");
    assert!(alive(pid));

    let down = script.run(&["down"]).await;
    assert_eq!(down.code, Some(0), "{}", down.all());
    assert!(
        down.stdout.contains(&format!("stopped etcd (pid {pid})")),
        "{}",
        down.all()
    );
    eventually(
        "the member's process is gone",
        Duration::from_secs(10),
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
    assert!(TcpStream::connect(("127.0.0.1", script.port)).is_err());
    assert!(!script.pidfile().exists());

    let again = script.run(&["down"]).await;
    assert_eq!(again.code, Some(0), "{}", again.all());
    assert!(again.stdout.contains("not running"), "{}", again.all());

    let status = script.run(&["status"]).await;
    assert_eq!(status.code, Some(1), "{}", status.all());
    assert!(
        status
            .stdout
            .contains(&format!("nothing answers at 127.0.0.1:{}", script.port)),
        "{}",
        status.all()
    );

    for _ in 0..2 {
        let reset = script.run(&["reset"]).await;
        assert_eq!(reset.code, Some(0), "{}", reset.all());
        assert!(!script.dir.path().join("data").exists());
    }

    // And it comes back after a reset.
    script.up().await;
}
