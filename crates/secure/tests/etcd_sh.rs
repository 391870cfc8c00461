//! The promise, end to end: `scripts/etcd.sh up --secure`, then the `cargo run -p secure -- ...`
//! line it prints (run here as the built binary, with the same arguments) works. The script gets its own
//! state directory and a free loopback port; a guard stops the member even when the test fails.

use std::process::{Command, Stdio};
use std::time::Duration;

use test_etcd::{etcd_sh_command, free_port, run_script, Bin};

const SECURE: &str = env!("CARGO_BIN_EXE_secure");

/// `scripts/etcd.sh` with LOCAL_ETCD_DIR and LOCAL_ETCD_PORT of its own; `down --secure` on drop.
struct SecureMember {
    dir: tempfile::TempDir,
    port: u16,
}

impl SecureMember {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = etcd_sh_command(self.dir.path(), args);
        cmd.env("LOCAL_ETCD_PORT", self.port.to_string());
        cmd
    }
}

impl Drop for SecureMember {
    fn drop(&mut self) {
        let _ = self
            .command(&["down", "--secure"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn the_cargo_run_line_that_up_secure_prints_works() {
    let member = SecureMember {
        dir: tempfile::Builder::new()
            .prefix("secure-etcd-sh-")
            .tempdir()
            .expect("the temp directory is writable"),
        port: free_port(),
    };
    let args = ["up", "--secure"];
    let up = run_script(member.command(&args), &args, Duration::from_secs(90)).await;
    assert_eq!(up.code, Some(0), "{}", up.all());
    let printed = up.stdout.clone();

    // `export ETCD_PASSWORD="$(cat FILE)"` and `cargo run -p secure -- ARGS`, as printed.
    let line = |start: &str| {
        printed
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(start))
            .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{printed}"))
            .to_string()
    };
    let password_file = line("export ETCD_PASSWORD=\"$(cat ")
        .trim_end_matches(")\"")
        .to_string();
    let password = std::fs::read_to_string(&password_file)
        .unwrap_or_else(|e| panic!("cannot read {password_file}: {e}"));
    let args_line = line("cargo run -p secure -- ");
    let args: Vec<&str> = args_line.split_whitespace().collect();
    assert!(args.contains(&"--key-file"), "{args_line}");

    let endpoint = format!("127.0.0.1:{}", member.port);
    let run = Bin::spawn_with_env(
        SECURE,
        &endpoint,
        &args,
        &[("ETCD_PASSWORD", password.trim())],
    )
    .finish(Duration::from_secs(30))
    .await;
    assert!(run.status.success(), "{run:#?}");
    for step in [
        "1. connected over TLS to https://",
        "2. logged in as app",
        "3. put /app/greeting",
        "4. put /config/feature-x: refused, permission denied",
        "5. connect again without a client certificate: refused",
    ] {
        assert!(run.stdout.contains(step), "missing {step:?}: {run:#?}");
    }
}
