//! What the `secure` topic has that is worth copying into a service of your own: reading a PEM file with an
//! error that names the flag and the file, and telling etcd's auth refusals apart.
//!
//! Depends only on `etcd-client` (with its `tls` feature) and `anyhow`.

use std::path::Path;

use anyhow::{bail, Result};

/// The contents of a PEM file (a certificate or a key), or an error that says which flag named it and
/// what is wrong: missing, unreadable, or not PEM at all.
///
/// Use it before `Certificate::from_pem` / `Identity::from_pem`: those accept any bytes, and a wrong file
/// only shows up later as a TLS handshake failure far from the cause.
pub fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>> {
    let shown = path.display();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => bail!(
            "cannot read {flag} {shown}: {}",
            e.to_string().to_lowercase()
        ),
    };
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        bail!("{flag} {shown} is not a PEM file (no `-----BEGIN ...-----` line)");
    }
    Ok(bytes)
}

/// Whether etcd refused a call because the user's roles do not grant the key (gRPC `PermissionDenied`).
///
/// Use it to tell "not allowed" (a configuration problem: fix the role) from "not reachable" (retry).
pub fn is_permission_denied(e: &etcd_client::Error) -> bool {
    // gRPC's PermissionDenied is code 7 (tonic, which defines the enum, is not a direct dependency).
    const PERMISSION_DENIED: i32 = 7;
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() as i32 == PERMISSION_DENIED)
}

/// Whether etcd refused a login: the user does not exist or the password is wrong. etcd does not say
/// which, on purpose.
pub fn is_login_refused(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("authentication failed"))
}
