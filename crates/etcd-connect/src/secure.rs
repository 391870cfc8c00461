//! TLS and users: the flags (etcdctl's names), the files they name read once with a clear error, the
//! password from `ETCD_PASSWORD` or a prompt, and TLS failures told apart in one line each.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use log::debug;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the password comes from. Never a flag: a flag lands in the shell history and in `ps` output.
pub const PASSWORD_VARIABLE: &str = "ETCD_PASSWORD";

/// TLS and user flags, with the names etcdctl gives them (`--cacert`, `--cert`, `--user`), so a command
/// line copies between the two; flattened into [`crate::ConnectArgs`], so every topic has them.
///
/// One exception: the private key is `--key-file` (etcd's own name for it), not etcdctl's `--key`, because
/// `--key` already names the etcd key in the topics (`cargo run -p kv -- --key k1`); the two would clash.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecureArgs {
    /// CA certificate (PEM) that signed etcd's server certificate; turns on TLS (https://).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM), for an etcd started with --client-cert-auth. Needs --key-file.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert (etcdctl calls it --key).
    #[arg(
        id = "tls_key",
        long = "key-file",
        value_name = "FILE",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,

    /// etcd user to log in as, for an etcd with auth enabled. The password is read from ETCD_PASSWORD,
    /// or asked for when stdin is a terminal.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// The password of `user` when a program sets it itself (tests, a service with its own secret
    /// store); not a flag. When `None`, [`PASSWORD_VARIABLE`] or a prompt gives it.
    #[arg(skip)]
    pub password: Option<Password>,
}

/// A password that never shows in `{:?}` output or logs.
#[derive(Clone)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(hidden)")
    }
}

impl SecureArgs {
    /// Logs in as `user` with `password`, for programs that hold the password themselves.
    pub fn with_user(mut self, user: &str, password: &str) -> SecureArgs {
        self.user = Some(user.to_string());
        self.password = Some(Password(password.to_string()));
        self
    }

    /// The password of `--user`: the one set by the program, else `ETCD_PASSWORD`, else a prompt when stdin
    /// is a terminal. `None` without `--user`.
    pub fn password(&self) -> Result<Option<String>> {
        let Some(user) = &self.user else {
            return Ok(None);
        };
        match &self.password {
            Some(Password(given)) => Ok(Some(given.clone())),
            None => password_for(user).map(Some),
        }
    }

    /// The same flags without `--user`: TLS only.
    pub fn without_user(&self) -> SecureArgs {
        SecureArgs {
            user: None,
            password: None,
            ..self.clone()
        }
    }

    /// The same flags without the client certificate and the user: what a client that only trusts the
    /// CA would use.
    pub fn without_identity(&self) -> SecureArgs {
        SecureArgs {
            cacert: self.cacert.clone(),
            ..SecureArgs::default()
        }
    }

    /// Whether the endpoints speak TLS: `--cacert` given.
    pub fn tls(&self) -> bool {
        self.cacert.is_some()
    }

    /// Reads the certificate files and the password into the client options. Each problem is one line
    /// naming the flag and the file, before any connection is tried.
    pub(crate) fn apply(&self, mut options: ConnectOptions) -> Result<ConnectOptions> {
        if let Some(cacert) = &self.cacert {
            let ca = read_pem("--cacert", cacert, "CERTIFICATE")?;
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                let cert = read_pem("--cert", cert, "CERTIFICATE")?;
                let key = read_pem("--key-file", key, "PRIVATE KEY")?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        } else if self.cert.is_some() {
            bail!("--cert and --key-file need --cacert: the CA certificate that signed etcd's server certificate");
        }
        if let Some(user) = &self.user {
            if user.is_empty() {
                bail!("--user cannot be empty");
            }
            // An expired auth token would otherwise fail every call after the token TTL (5 minutes by
            // default): with this, etcd-client logs in again and retries the call once.
            let password = self.password()?.unwrap_or_default();
            options = options
                .with_user(user.as_str(), password)
                .with_auto_token_refresh(true);
        }
        Ok(options)
    }

    /// One line for a connection to `endpoint` that failed with `e` because of TLS, naming the file to
    /// fix; `None` when it is not about TLS.
    ///
    /// With TLS 1.3 the server judges the client certificate only after the client considers the
    /// handshake done, so etcd's alert races etcd-client's first request and is often lost ("operation
    /// was canceled"). When the error says nothing, a handshake of our own, followed by one read, hears
    /// the alert for sure.
    pub(crate) async fn tls_problem(
        &self,
        e: &etcd_client::Error,
        endpoint: &str,
        limit: Duration,
    ) -> Option<String> {
        if let Some(problem) = self.classify(&chain_text(e), endpoint) {
            return Some(problem);
        }
        if !endpoint.starts_with("https://") {
            return None;
        }
        let heard = self.handshake(endpoint, limit).await?;
        self.classify(&heard, endpoint)
    }

    /// The TLS failure that `chain` (error texts) describes, as one line.
    fn classify(&self, chain: &str, endpoint: &str) -> Option<String> {
        debug!("checking for a TLS cause in: {chain}");
        let cacert = shown_path(self.cacert.as_deref());
        let cert = shown_path(self.cert.as_deref());
        let problem = if chain.contains("UnknownIssuer") || chain.contains("BadSignature") {
            format!(
                "etcd's server certificate is not signed by the CA in --cacert {cacert}; pass the CA \
                 certificate that signed etcd's --cert-file"
            )
        } else if chain.contains("NotValidForName") || chain.contains("not valid for name") {
            format!(
                "etcd's server certificate does not name {}; connect with a host name or IP address \
                 that its subject alternative names list",
                host_of(endpoint)
            )
        } else if chain.contains("Expired") {
            "a certificate has expired; make new ones (`scripts/etcd.sh reset --secure` then `up --secure`)"
                .to_string()
        } else if chain.contains("CertificateRequired") || chain.contains("HandshakeFailure") {
            if self.cert.is_none() {
                "etcd requires a client certificate (it runs with --client-cert-auth); pass --cert FILE \
                 and --key-file FILE"
                    .to_string()
            } else {
                format!("etcd refused the TLS handshake with the client certificate --cert {cert}")
            }
        } else if chain.contains("BadCertificate")
            || chain.contains("UnknownCA")
            || chain.contains("bad certificate")
        {
            if self.cert.is_none() {
                return Some(
                    "etcd requires a client certificate (it runs with --client-cert-auth); pass --cert \
                     FILE and --key-file FILE"
                        .to_string(),
                );
            }
            format!(
                "etcd does not trust the client certificate --cert {cert}: it is not signed by the CA \
                 etcd was started with (its --trusted-ca-file)"
            )
        } else if chain.contains("InvalidContentType") || chain.contains("corrupt message") {
            format!(
                "{} does not speak TLS; use http:// and leave out --cacert, --cert and --key-file",
                host_port(endpoint)
            )
        } else {
            return None;
        };
        Some(problem)
    }
}

impl SecureArgs {
    /// A TLS handshake with the same CA and client certificate, then one read: what the server says to
    /// us, as text, or `None` when it accepts us (or the attempt itself cannot be made).
    async fn handshake(&self, endpoint: &str, limit: Duration) -> Option<String> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use tokio_rustls::rustls::{self, RootCertStore};

        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(self.cacert.as_ref()?).ok()? {
            roots.add(ca.ok()?).ok()?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .ok()?
                    .collect::<std::result::Result<_, _>>()
                    .ok()?;
                config
                    .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).ok()?)
                    .ok()?
            }
            _ => config.with_no_client_auth(),
        };
        let host_port = host_port(endpoint);
        let name =
            ServerName::try_from(host_of(host_port).trim_matches(['[', ']']).to_string()).ok()?;
        let attempt = async {
            let tcp = TcpStream::connect(host_port).await?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let mut tls = connector.connect(name, tcp).await?;
            let mut byte = [0u8; 1];
            tls.read(&mut byte).await
        };
        match tokio::time::timeout(limit.min(Duration::from_secs(1)), attempt).await {
            Ok(Err(e)) => Some(chain_text(&e)),
            _ => None,
        }
    }
}

/// The password for `user`: `ETCD_PASSWORD`, else a prompt on the terminal (not echoed). The prompt comes
/// once per process: the bench topic opens several connections.
fn password_for(user: &str) -> Result<String> {
    static TYPED: OnceLock<String> = OnceLock::new();
    if let Ok(from_env) = std::env::var(PASSWORD_VARIABLE) {
        return Ok(from_env);
    }
    if let Some(typed) = TYPED.get() {
        return Ok(typed.clone());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "--user {user} needs a password: set {PASSWORD_VARIABLE}, or run in a terminal to be asked \
             for it (never as a flag: flags land in the shell history)"
        );
    }
    let password = rpassword::prompt_password(format!("password for etcd user {user}: "))
        .context("cannot read the password from the terminal")?;
    Ok(TYPED.get_or_init(|| password).clone())
}

/// A PEM file's contents, or one line naming the flag, the file and what is wrong with it.
fn read_pem(flag: &str, path: &Path, kind: &str) -> Result<Vec<u8>> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {flag} {shown}: {}",
            e.to_string().to_lowercase()
        )
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN ") || !text.contains(kind) {
        bail!("{flag} {shown} is not a PEM file with a {kind} block (`-----BEGIN {kind}-----`)");
    }
    Ok(bytes)
}

fn shown_path(path: Option<&Path>) -> String {
    path.map_or_else(|| "(none)".into(), |p| p.display().to_string())
}

fn host_port(endpoint: &str) -> &str {
    endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
}

fn host_of(endpoint: &str) -> &str {
    let host_port = host_port(endpoint);
    host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
}

/// Every error in the chain, with its Debug form too: rustls names its reasons (`UnknownIssuer`) only there.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{e} {e:?}");
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(" | {c} {c:?}"));
        cause = c.source();
    }
    text
}

/// Whether a TLS server listens at `addr`: a TLS record with a truncated ClientHello gets a TLS alert
/// (record type 21, version 3.x) from any TLS server, and something else from a plain-text one.
pub(crate) async fn speaks_tls(addr: SocketAddr, limit: Duration) -> bool {
    // Record: handshake (22), version 3.1, length 5; message: client_hello (1), length 1, one byte.
    const TRUNCATED_HELLO: [u8; 10] = [22, 3, 1, 0, 5, 1, 0, 0, 1, 0];
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(&TRUNCATED_HELLO).await.ok()?;
        let mut reply = [0u8; 2];
        stream.read_exact(&mut reply).await.ok()?;
        Some(reply)
    };
    matches!(
        tokio::time::timeout(limit, attempt).await,
        Ok(Some([21 | 22, 3]))
    )
}
