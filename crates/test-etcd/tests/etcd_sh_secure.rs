//! `scripts/etcd.sh up --secure` and its `down`, `status` and `reset`, run for real: each test gives the
//! script its own state directory (LOCAL_ETCD_DIR) and free loopback ports (LOCAL_ETCD_PORT), so no test
//! touches a developer's `.etcd/` or ports 2379 and 2479. A guard runs `down --secure` and `down` when a test
//! ends, then SIGKILLs any PID still recorded, so no member is left running even when a test fails.

use std::cell::Cell;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use test_etcd::{
    etcd_sh_command, eventually, free_port, get_value, run_script, ScriptRun, Signal,
    ETCDCTL_VARIABLES,
};

/// `up --secure` waits up to 30 s for a healthy member, then sets up the users; `down` waits up to 10 s
/// before SIGKILL.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// A client call, or an etcdctl run, against a healthy local member.
const CALL_LIMIT: Duration = Duration::from_secs(10);

/// The script with one state directory; `port` is the secure member's client port, which [`Script::up`]
/// changes when another process took it.
struct Script {
    dir: tempfile::TempDir,
    port: Cell<u16>,
}

impl Script {
    fn new() -> Script {
        let dir = tempfile::Builder::new()
            .prefix("etcd-sh-secure-")
            .tempdir()
            .expect("the temp directory is writable");
        Script {
            dir,
            port: Cell::new(free_port()),
        }
    }

    fn port(&self) -> u16 {
        self.port.get()
    }

    /// `<LOCAL_ETCD_DIR>/secure/NAME`.
    fn secure(&self, name: &str) -> PathBuf {
        self.dir.path().join("secure").join(name)
    }

    /// The command with only our settings: nothing from the environment that would point elsewhere.
    fn command(&self, port: Option<u16>, args: &[&str]) -> std::process::Command {
        let mut cmd = etcd_sh_command(self.dir.path(), args);
        if let Some(port) = port {
            cmd.env("LOCAL_ETCD_PORT", port.to_string());
        }
        cmd
    }

    /// Runs the script on the secure member's port.
    async fn run(&self, args: &[&str]) -> ScriptRun {
        self.run_on(Some(self.port()), args).await
    }

    /// Runs the script with LOCAL_ETCD_PORT set to `port` (or unset), killing it after [`SCRIPT_LIMIT`].
    async fn run_on(&self, port: Option<u16>, args: &[&str]) -> ScriptRun {
        run_script(self.command(port, args), args, SCRIPT_LIMIT).await
    }

    /// `up --secure`, which must succeed. Other tests pick free ports at the same time, so a port the
    /// script saw free (ours, or the peer port after it) can be taken before etcd binds it: etcd then exits with "address already in use" before it wrote anything, and this tries
    /// again on a fresh port (at most three times), as the cluster tests do.
    async fn up(&self) -> ScriptRun {
        let mut last = String::new();
        for _attempt in 0..3 {
            let run = self.run(&["up", "--secure"]).await;
            if run.code == Some(0) {
                return run;
            }
            let all = run.all();
            assert!(
                all.contains("address already in use"),
                "up --secure failed:\n{all}"
            );
            last = all;
            self.port.set(free_port());
        }
        panic!("up --secure failed three times on a port race:\n{last}");
    }

    fn secure_pid(&self) -> Option<i32> {
        read_pid(&self.secure("etcd.pid"))
    }

    fn plain_pid(&self) -> Option<i32> {
        read_pid(&self.dir.path().join("etcd.pid"))
    }

    fn password(&self, user: &str) -> String {
        let file = self.secure(&format!("{user}.password"));
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
            .trim()
            .to_string()
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port())
    }

    /// A client over TLS with this member's CA and client certificate, logged in as `user`.
    async fn client_as(&self, user: &str) -> Client {
        let certs = self.secure("certs");
        let read = |name: &str| std::fs::read(certs.join(name)).expect("the certificates exist");
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read("ca.crt")))
            .identity(Identity::from_pem(read("client.crt"), read("client.key")));
        let options = ConnectOptions::new()
            .with_tls(tls)
            .with_user(user, self.password(user))
            .with_connect_timeout(CALL_LIMIT)
            .with_timeout(CALL_LIMIT);
        tokio::time::timeout(
            CALL_LIMIT,
            Client::connect([self.endpoint()], Some(options)),
        )
        .await
        .expect("the secure member answers in time")
        .unwrap_or_else(|e| panic!("connect as {user} over TLS: {e}"))
    }
}

impl Drop for Script {
    /// `down --secure` and `down`, bounded; then SIGKILL whatever PID is still recorded, so a failed test
    /// leaves nothing behind.
    fn drop(&mut self) {
        for args in [&["down", "--secure"][..], &["down"][..]] {
            if let Ok(mut child) = self.command(None, args).spawn() {
                let deadline = Instant::now() + SCRIPT_LIMIT;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for pid in [self.secure_pid(), self.plain_pid()].into_iter().flatten() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn read_pid(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

async fn gone(pid: i32) {
    eventually("the member's process is gone", CALL_LIMIT, || async {
        (!alive(pid)).then_some(())
    })
    .await;
}

/// The lines `up --secure` prints for a member at `port` in state directory `dir` (outside the
/// repository, so the paths are absolute).
fn expected_lines(dir: &Path, port: u16) -> Vec<String> {
    let s = dir.join("secure");
    let s = s.display();
    // The same files; the topics call the private key --key-file (their --key is an etcd key).
    let tls = format!(
        "--endpoints https://127.0.0.1:{port} --cacert {s}/certs/ca.crt --cert {s}/certs/client.crt --key {s}/certs/client.key"
    );
    let topic_tls = tls.replace(" --key ", " --key-file ");
    vec![
        format!(
            "etcd.sh: secure etcd (TLS, client certificates, users) is healthy at https://127.0.0.1:{port}"
        ),
        format!(
            "etcd.sh: users: root (password in {s}/root.password), app (password in {s}/app.password, may read and write /app/ only)"
        ),
        "etcd.sh: try, from the repository's top folder:".to_string(),
        format!("  export ETCD_PASSWORD=\"$(cat {s}/app.password)\""),
        format!("  cargo run -p secure -- {topic_tls} --user app"),
        format!("  etcdctl {tls} get /app/ --prefix"),
    ]
}

/// Asserts that `run` ends with exactly the lines `up --secure` prints.
fn assert_prints_the_lines(run: &ScriptRun, script: &Script) {
    let expected = expected_lines(script.dir.path(), script.port());
    let last: Vec<&str> = run
        .stdout
        .lines()
        .rev()
        .take(expected.len())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(last, expected, "\n{}", run.all());
}

/// The value of `flag` in a printed command line.
fn flag_value<'a>(line: &'a str, flag: &str) -> &'a str {
    let mut words = line.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == flag)
        .unwrap_or_else(|| panic!("no {flag} in {line}"));
    words
        .next()
        .unwrap_or_else(|| panic!("{flag} has no value in {line}"))
}

/// Runs the printed etcdctl line, bounded.
async fn etcdctl(line: &str) -> std::process::Output {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "etcdctl", "{line}");
    let mut cmd = tokio::process::Command::new(test_etcd::etcdctl_binary());
    cmd.args(&words[1..])
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for var in ETCDCTL_VARIABLES {
        cmd.env_remove(var);
    }
    tokio::time::timeout(CALL_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{line} did not finish within {CALL_LIMIT:?}"))
        .expect("etcdctl runs")
}

/// The command line of a running process, with its NUL separators as spaces.
fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[tokio::test]
async fn up_secure_prints_the_lines_and_serves_tls_with_users_and_a_limited_role() {
    let script = Script::new();
    let run = script.up().await;
    assert_prints_the_lines(&run, &script);
    assert!(
        run.stdout.contains("created users root and app"),
        "{}",
        run.all()
    );

    // The printed files are the ones the member uses; the passwords are random hex, readable by the owner
    // only, and on no command line.
    let cargo = run.line("cargo run -p secure -- ");
    for (flag, name) in [
        ("--cacert", "certs/ca.crt"),
        ("--cert", "certs/client.crt"),
        // The topics' name for etcdctl's --key: their own --key is an etcd key.
        ("--key-file", "certs/client.key"),
    ] {
        let printed = flag_value(cargo, flag);
        assert_eq!(Path::new(printed), script.secure(name), "{cargo}");
        assert!(Path::new(printed).is_file(), "{printed} exists");
    }
    assert_eq!(flag_value(cargo, "--user"), "app");
    assert_eq!(flag_value(cargo, "--endpoints"), script.endpoint());
    let pid = script.secure_pid().expect("up --secure recorded a PID");
    let args = cmdline(pid);
    for user in ["root", "app"] {
        let password = script.password(user);
        assert!(
            password.len() == 24 && password.chars().all(|c| c.is_ascii_hexdigit()),
            "{user}'s password is 12 random bytes in hex"
        );
        let mode = std::fs::metadata(script.secure(&format!("{user}.password")))
            .expect("the password file exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{user}.password is the owner's only");
        assert!(
            !args.contains(&password),
            "a password on etcd's command line"
        );
        assert!(!run.stdout.contains(&password) && !run.stderr.contains(&password));
    }
    for flag in [
        "--client-cert-auth",
        "--listen-client-urls https://127.0.0.1:",
    ] {
        assert!(args.contains(flag), "etcd runs without {flag}: {args}");
    }
    assert!(
        TcpStream::connect(("127.0.0.1", script.port())).is_ok(),
        "etcd listens on the announced port"
    );

    // As app, over TLS with the printed files and the password from the file: /app/ yes, elsewhere no.
    let mut app = script.client_as("app").await;
    app.put("/app/greeting", "hello", None)
        .await
        .expect("app may write under /app/");
    assert_eq!(
        get_value(&mut app, "/app/greeting").await.as_deref(),
        Some("hello")
    );
    let refused = app
        .put("/elsewhere", "no", None)
        .await
        .expect_err("app may not write outside /app/");
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );

    // root, with its password, sees both users.
    let mut root = script.client_as("root").await;
    let users = root.user_list().await.expect("root may list the users");
    let mut names = users.users().to_vec();
    names.sort();
    assert_eq!(names, ["app", "root"]);

    // The printed etcdctl line works without a password: etcd takes the certificate's CN as the user.
    let out = etcdctl(run.line("etcdctl ")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("/app/greeting") && stdout.contains("hello"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn up_secure_twice_and_after_a_restart_keeps_the_users_passwords_and_data() {
    let script = Script::new();
    script.up().await;
    let pid = script.secure_pid().expect("up --secure recorded a PID");
    let passwords = (script.password("root"), script.password("app"));
    let mut app = script.client_as("app").await;
    app.put("/app/kept", "yes", None).await.expect("a put");

    // On a running member: the same lines again, nothing recreated.
    let again = script.up().await;
    assert!(
        again
            .stdout
            .contains(&format!("already running (pid {pid})")),
        "{}",
        again.all()
    );
    assert!(!again.stdout.contains("created users"), "{}", again.all());
    assert_prints_the_lines(&again, &script);
    assert_eq!(script.secure_pid(), Some(pid));
    assert_eq!((script.password("root"), script.password("app")), passwords);

    // Stopped and started on its data: the users, their passwords and the keys are still there.
    let down = script.run(&["down", "--secure"]).await;
    assert_eq!(down.code, Some(0), "{}", down.all());
    gone(pid).await;
    let restart = script.up().await;
    assert!(
        !restart.stdout.contains("created users"),
        "{}",
        restart.all()
    );
    assert_prints_the_lines(&restart, &script);
    assert_ne!(script.secure_pid(), Some(pid), "a new process");
    assert_eq!((script.password("root"), script.password("app")), passwords);
    let mut app = script.client_as("app").await;
    assert_eq!(
        get_value(&mut app, "/app/kept").await.as_deref(),
        Some("yes")
    );
    let refused = app
        .put("/outside", "no", None)
        .await
        .expect_err("auth is still on after the restart");
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
}

#[tokio::test]
async fn status_down_and_reset_secure_act_on_the_secure_member() {
    let script = Script::new();
    script.up().await;
    let pid = script.secure_pid().expect("up --secure recorded a PID");
    let old_password = script.password("app");

    let status = script.run(&["status", "--secure"]).await;
    assert_eq!(status.code, Some(0), "{}", status.all());
    assert!(
        status
            .stdout
            .contains(&format!("running (pid {pid}) at {}", script.endpoint())),
        "{}",
        status.all()
    );
    assert!(
        status.stdout.contains(&script.endpoint()) && status.stdout.contains("IS LEADER"),
        "status shows etcd's own table:\n{}",
        status.all()
    );

    let down = script.run(&["down", "--secure"]).await;
    assert_eq!(down.code, Some(0), "{}", down.all());
    assert!(
        down.stdout
            .contains(&format!("stopped the secure etcd (pid {pid})")),
        "{}",
        down.all()
    );
    gone(pid).await;
    assert!(TcpStream::connect(("127.0.0.1", script.port())).is_err());
    assert!(!script.secure("etcd.pid").exists());
    assert!(
        script.secure("data").is_dir() && script.secure("app.password").is_file(),
        "down keeps the data and the passwords"
    );

    let again = script.run(&["down", "--secure"]).await;
    assert_eq!(again.code, Some(0), "{}", again.all());
    assert!(again.stdout.contains("not running"), "{}", again.all());

    let stopped = script.run(&["status", "--secure"]).await;
    assert_eq!(stopped.code, Some(1), "{}", stopped.all());
    assert!(
        stopped.stdout.contains("the secure etcd is not running"),
        "{}",
        stopped.all()
    );

    for _ in 0..2 {
        let reset = script.run(&["reset", "--secure"]).await;
        assert_eq!(reset.code, Some(0), "{}", reset.all());
        assert!(
            !script.dir.path().join("secure").exists(),
            "reset --secure wipes data, certificates and passwords"
        );
    }

    // After a reset: a new CA, new users, new passwords.
    let fresh = script.up().await;
    assert!(
        fresh.stdout.contains("created users root and app"),
        "{}",
        fresh.all()
    );
    assert_ne!(script.password("app"), old_password);
    let mut app = script.client_as("app").await;
    app.put("/app/after-reset", "1", None)
        .await
        .expect("a put after the reset");
}

#[tokio::test]
async fn plain_and_secure_members_run_side_by_side_in_one_state_directory() {
    let script = Script::new();
    let plain_port = loop {
        let p = free_port();
        if p != script.port() && p != script.port() + 1 {
            break p;
        }
    };
    let plain = script.run_on(Some(plain_port), &["up"]).await;
    assert_eq!(plain.code, Some(0), "{}", plain.all());
    script.up().await;
    let plain_pid = script.plain_pid().expect("up recorded a PID");
    let secure_pid = script.secure_pid().expect("up --secure recorded a PID");
    assert_ne!(plain_pid, secure_pid);

    // Both serve: the plain one without TLS or users, the secure one with both.
    let mut open = Client::connect([format!("127.0.0.1:{plain_port}")], None)
        .await
        .expect("a client for the plain member");
    open.put("/anywhere", "plain", None)
        .await
        .expect("the plain member takes any key");
    let mut app = script.client_as("app").await;
    app.put("/app/side", "secure", None).await.expect("a put");
    assert_eq!(get_value(&mut open, "/app/side").await, None, "two stores");

    // The plain status names the secure member in one line.
    let status = script.run_on(None, &["status"]).await;
    assert_eq!(status.code, Some(0), "{}", status.all());
    assert!(
        status.stdout.contains(&format!(
            "running (pid {plain_pid}) at 127.0.0.1:{plain_port}"
        )),
        "{}",
        status.all()
    );
    let line = format!(
        "the secure etcd also runs (pid {secure_pid}) at {}",
        script.endpoint()
    );
    assert_eq!(status.stdout.matches(&line).count(), 1, "{}", status.all());

    // The plain down stops the plain member only, and says the secure one keeps running.
    let down = script.run_on(None, &["down"]).await;
    assert_eq!(down.code, Some(0), "{}", down.all());
    assert!(
        down.stdout
            .contains(&format!("stopped etcd (pid {plain_pid})")),
        "{}",
        down.all()
    );
    assert!(
        down.stdout.contains(&format!(
            "the secure etcd (pid {secure_pid}) at {} keeps running",
            script.endpoint()
        )),
        "{}",
        down.all()
    );
    gone(plain_pid).await;
    assert!(alive(secure_pid), "the secure member still runs");
    app.put("/app/still", "here", None)
        .await
        .expect("the secure member still serves");

    // And the secure one's status, without LOCAL_ETCD_PORT, finds it on its own port.
    let secure_status = script.run_on(None, &["status", "--secure"]).await;
    assert_eq!(secure_status.code, Some(0), "{}", secure_status.all());
    assert!(
        secure_status.stdout.contains(&format!(
            "running (pid {secure_pid}) at {}",
            script.endpoint()
        )),
        "{}",
        secure_status.all()
    );
}

#[tokio::test]
async fn up_secure_on_a_taken_port_fails_with_a_command_for_other_ports() {
    // A port from free_port(), whose next port (the peer port) is free too: etcd fails on the client port.
    let listener = TcpListener::bind(("127.0.0.1", free_port())).expect("a loopback listener");
    let script = Script::new();
    script.port.set(listener.local_addr().unwrap().port());

    let run = script.run(&["up", "--secure"]).await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    for text in [
        format!(
            "etcd could not bind 127.0.0.1:{} (bind: address already in use)",
            script.port()
        ),
        format!("port {} is taken", script.port()),
    ] {
        assert!(run.stderr.contains(&text), "no {text:?} in:\n{}", run.all());
    }
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("LOCAL_ETCD_PORT=") && l.trim_end().ends_with(" up --secure")),
        "no command for other ports:\n{}",
        run.all()
    );
    assert_eq!(script.secure_pid(), None, "nothing was started");

    // --secure belongs to the single member's commands only.
    let cluster = script.run(&["cluster", "up", "--secure"]).await;
    assert_eq!(cluster.code, Some(1), "{}", cluster.all());
    assert!(
        cluster.stderr.contains("--secure goes with up, down"),
        "{}",
        cluster.all()
    );
    drop(listener);
}
