//! A throwaway etcd that runs the way production etcd does: TLS on the client port, client certificates
//! required (`--client-cert-auth`), and auth enabled with a `root` user and a limited user `app`, whose
//! role reads and writes under [`APP_PREFIX`] only. The same setup as `scripts/etcd.sh up --secure`, with
//! the same certificate script.

use std::path::{Path, PathBuf};
use std::process::Command;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, Permission, TlsOptions};

use crate::TestEtcd;

/// The limited user, its password and the prefix its role may read and write.
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-pw-7c1e9a";
pub const APP_PREFIX: &str = "/app/";
pub const ROOT_PASSWORD: &str = "root-pw-52b0d4";

/// A secure member, plus a second CA with its own certificates that this member does not trust.
pub struct SecureEtcd {
    etcd: TestEtcd,
    certs: tempfile::TempDir,
    other: tempfile::TempDir,
}

impl SecureEtcd {
    /// Starts it, creates the users and the role, enables auth. Panics with the reason if it cannot.
    pub async fn start() -> SecureEtcd {
        SecureEtcd::start_with(&[]).await
    }

    /// [`SecureEtcd::start`] with extra etcd flags, such as `--auth-token-ttl=2`.
    pub async fn start_with(extra: &[&str]) -> SecureEtcd {
        let certs = cert_dir();
        let other = cert_dir();
        let dir = certs.path();
        let path = |name: &str| dir.join(name).display().to_string();
        let mut flags = vec![
            format!("--cert-file={}", path("server.crt")),
            format!("--key-file={}", path("server.key")),
            format!("--trusted-ca-file={}", path("ca.crt")),
            "--client-cert-auth".to_string(),
        ];
        flags.extend(extra.iter().map(|f| f.to_string()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let tls_only = ConnectOptions::new().with_tls(tls(dir));
        let mut etcd = TestEtcd::start_configured(&flags, Some(tls_only)).await;
        enable_auth(&mut etcd.client().await).await;
        // From now on the harness's own clients log in as root.
        etcd.options = Some(
            ConnectOptions::new()
                .with_tls(tls(dir))
                .with_user("root", ROOT_PASSWORD)
                // Tests shorten the token's life (--auth-token-ttl); the harness logs in again.
                .with_auto_token_refresh(true),
        );
        SecureEtcd { etcd, certs, other }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.etcd.endpoint())
    }

    /// The member itself, to stop, restart or freeze it.
    pub fn etcd(&mut self) -> &mut TestEtcd {
        &mut self.etcd
    }

    /// A client logged in as `root`.
    pub async fn root_client(&self) -> Client {
        self.etcd.client().await
    }

    /// `ca.crt`, `client.crt`, `client.key`, ... of the member's own CA.
    pub fn file(&self, name: &str) -> String {
        self.certs.path().join(name).display().to_string()
    }

    /// The same files of the other CA, which the member does not trust.
    pub fn other_file(&self, name: &str) -> String {
        self.other.path().join(name).display().to_string()
    }

    /// `--cacert ca.crt --cert client.crt --key-file client.key`, the flags every topic takes.
    pub fn tls_args(&self) -> Vec<String> {
        vec![
            "--cacert".into(),
            self.file("ca.crt"),
            "--cert".into(),
            self.file("client.crt"),
            "--key-file".into(),
            self.file("client.key"),
        ]
    }

    /// [`SecureEtcd::tls_args`] plus `--user app`: with `ETCD_PASSWORD` set to [`APP_PASSWORD`], a topic
    /// logs in as the limited user.
    pub fn app_args(&self) -> Vec<String> {
        let mut args = self.tls_args();
        args.extend(["--user".to_string(), APP_USER.to_string()]);
        args
    }
}

impl SecureEtcd {
    /// Runs a topic binary against this member as `app` (TLS flags, `--user app`, the password in
    /// `ETCD_PASSWORD`) with `more` flags, killing it after `limit`.
    pub async fn run_as_app(
        &self,
        program: &str,
        more: &[&str],
        limit: std::time::Duration,
    ) -> crate::Output {
        let mut args = self.app_args();
        args.extend(more.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::Bin::spawn_with_env(
            program,
            &self.endpoint(),
            &args,
            &[("ETCD_PASSWORD", APP_PASSWORD)],
        )
        .finish(limit)
        .await
    }
}

/// A temporary folder with a CA, a server and a client certificate from `scripts/make-certs.sh`.
fn cert_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("etcd-by-example-certs-")
        .tempdir()
        .expect("the temp directory is writable");
    let script = repository().join("scripts/make-certs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (is openssl installed? scripts/install-deps.sh installs it): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The repository's top folder.
pub(crate) fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tls(dir: &Path) -> TlsOptions {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
    };
    TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt")))
        .identity(Identity::from_pem(read("client.crt"), read("client.key")))
}

/// `root` (with the root role, which etcd requires before auth can be enabled) and `app`, whose role
/// `app` reads and writes keys under [`APP_PREFIX`]; then auth on.
async fn enable_auth(client: &mut Client) {
    client
        .user_add("root", ROOT_PASSWORD, None)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", "add user root"));
    client
        .user_grant_role("root", "root")
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", "grant root the root role"));
    client
        .user_add(APP_USER, APP_PASSWORD, None)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", "add user app"));
    client
        .role_add(APP_USER)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", "add role app"));
    client
        .role_grant_permission(APP_USER, Permission::read_write(APP_PREFIX).with_prefix())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", "grant role app /app/"));
    client
        .user_grant_role(APP_USER, APP_USER)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", "grant user app the role app"));
    client
        .auth_enable()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", "enable auth"));
}
