//! # secure: TLS, client certificates and users
//!
//! The article's programs talk plain HTTP to an etcd anyone can write to. The etcd a service meets in
//! production (Kubernetes' among them) speaks TLS, asks every client for a certificate, and has auth
//! enabled: each user may touch only what its roles grant. This program walks through that, step by step:
//! connect over TLS with a client certificate, log in as the limited user `app`, write where its role
//! allows, be refused where it does not, and see a client without a certificate turned away.
//!
//! Run it (`scripts/etcd.sh up --secure` starts such an etcd and prints this very command):
//!
//! ```text
//! scripts/etcd.sh up --secure
//! export ETCD_PASSWORD="$(cat .etcd/secure/app.password)"
//! cargo run -p secure -- --endpoints https://127.0.0.1:2479 --cacert .etcd/secure/certs/ca.crt \
//!     --cert .etcd/secure/certs/client.crt --key-file .etcd/secure/certs/client.key --user app
//! ```
//!
//! The flags are etcdctl's, but for the private key: `--key-file` (etcd's own name for it), since `--key`
//! names the etcd key in the other topics. The password comes from `ETCD_PASSWORD`, or from a prompt when
//! stdin is a terminal: never from a flag, which would land in the shell history and in `ps`.
//!
//! Try next: every other topic takes the same flags (README.md has the list); then a wrong
//! `ETCD_PASSWORD`, or `--cacert` pointing at another file, and read the one-line errors.

mod cli;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd_client::{Certificate, Client, Compare, CompareOp, DeleteOptions, Identity, TlsOptions};
use etcd_client::{Txn, TxnOp};
use etcd_connect::ConnectArgs;
use recipes::shutdown::ExitBudget;

// A handful of sequential calls: the single-threaded runtime is enough and starts faster.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    let secure = &args.connect.secure;
    let (Some(cacert), Some(cert), Some(key), Some(user)) =
        (&secure.cacert, &secure.cert, &secure.key, &secure.user)
    else {
        bail!(
            "this topic needs --cacert, --cert, --key-file and --user; `scripts/etcd.sh up --secure` starts an \
             etcd with TLS and users and prints the whole command"
        );
    };
    let (prefix, outside) = (&args.prefix, &args.outside_key);
    if outside.starts_with(prefix.as_str()) {
        bail!("--outside-key {outside} is under --prefix {prefix}; choose a key outside it");
    }
    let urls = args.connect.urls()?.join(",");

    // 1. Connect over TLS. Two things happen in the handshake, one per direction:
    //    - we check etcd's certificate against *our* CA only (`ca_certificate`), not the system's list of
    //      public CAs: a private etcd's certificate is signed by a private CA, and trusting only that one
    //      means no other certificate, however valid on the web, can pass for etcd;
    //    - we show etcd our own certificate (`identity`): an etcd started with --client-cert-auth hangs up
    //      on any client without one signed by the CA it trusts.
    //    etcd-client's `tls` feature (rustls) does the work; the URL must say https://.
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(secure::read_pem("--cacert", cacert)?))
        .identity(Identity::from_pem(
            secure::read_pem("--cert", cert)?,
            secure::read_pem("--key-file", key)?,
        ));
    // `Client::connect` is lazy, and a raw TLS error is a nest of rustls, hyper and tonic wrappers: so
    // `dial` first makes a handshake with the same flags and asks for etcd's status within --dial-timeout,
    // and names what failed in one line (wrong CA, certificate refused, not TLS, nothing listening). Its
    // options carry HTTP/2 keep-alive pings too: a call to an etcd gone silent fails instead of hanging.
    let tls_only = ConnectArgs {
        secure: secure.without_user(), // the login is step 2
        ..args.connect.clone()
    };
    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tlsConfig, ...})
    let mut client = etcd_connect::dial(&tls_only, |endpoints, options| {
        // Step 2's login gives a token that expires (5 minutes by default, --auth-token-ttl); with this,
        // etcd-client logs in again when etcd says the token is no longer valid, and retries the call.
        let options = options.with_tls(tls).with_auto_token_refresh(true);
        Client::connect(endpoints, Some(options))
    })
    .await?;
    let (ca, ours) = (file_name(cacert), file_name(cert));
    println!("1. connected over TLS to {urls}: etcd's certificate is signed by our CA ({ca}), and etcd accepted ours ({ours})");

    // 2. Log in. etcd checks the password and answers with a token, which etcd-client then sends with
    //    every call: the user is who the token says, and its roles decide what each call may touch.
    //    (Without a token, an etcd with --client-cert-auth takes the certificate's common name, CN, as the
    //    user name: our certificate says CN=app too. A password login is what clients without their own
    //    certificate use, and what lets one certificate serve several users.)
    let password = secure
        .password()?
        .expect("a --user was given, so password() asks for its password");
    client
        .update_user(Some((user.clone(), password)))
        .await
        .with_context(|| format!("log in as {user}"))?;
    println!("2. logged in as {user}: etcd gave back a token, which every call now carries");

    let greeting = put_and_read(&mut client, prefix, user).await?;
    write_outside(&mut client, &args, user).await?;
    without_a_certificate(&args.connect).await;
    let (cacert, cert, key) = (cacert.display(), cert.display(), key.display());
    println!("done: {greeting} stays in etcd; try `etcdctl --endpoints {urls} --cacert {cacert} --cert {cert} --key {key} get {greeting}`");
    Ok(())
}

/// 3. Write and read where the role allows. Returns the key written.
async fn put_and_read(client: &mut Client, prefix: &str, user: &str) -> Result<String> {
    let greeting = format!("{prefix}greeting");
    let hello = format!("hello from {user}");
    let put = client.put(greeting.as_str(), hello, None).await;
    let put = put.with_context(|| format!("put {greeting}"))?;
    let revision = put.header().map_or(0, |h| h.revision());
    let got = client.get(greeting.as_str(), None).await;
    let got = got.with_context(|| format!("get {greeting}"))?;
    let value = got
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()));
    let value = value.unwrap_or_default();
    println!("3. put {greeting} (revision {revision}) and read it back: {value}");
    Ok(greeting)
}

/// 4. Write outside the prefix. etcd checks every call against the user's roles; `app` holds the role
///    `app`, which grants read and write on keys starting with the prefix, and nothing else. The write is
///    a put-if-absent (a transaction on create revision 0), so that if this user may write there after
///    all, no existing key is overwritten, and only the key this run created is deleted again.
async fn write_outside(client: &mut Client, args: &cli::Args, user: &str) -> Result<()> {
    let (prefix, outside) = (&args.prefix, args.outside_key.as_str());
    let absent = Compare::create_revision(outside, CompareOp::Equal, 0);
    let put = TxnOp::put(outside, "written by the secure topic", None);
    match client.txn(Txn::new().when([absent]).and_then([put])).await {
        Err(e) if secure::is_permission_denied(&e) => {
            println!("4. put {outside}: refused, permission denied");
            println!(
                "   {user}'s roles grant keys under {prefix} only; etcd refuses everything else before it \
                 happens (root manages roles: etcdctl role get {user})"
            );
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("put {outside}")),
        Ok(reply) => {
            // Not refused: the user may write there. Undo exactly what we wrote, if we wrote it, on the
            // way to the error exit: bounded by --dial-timeout.
            if reply.succeeded() {
                let created = reply.header().map_or(0, |h| h.revision());
                let ours = Compare::create_revision(outside, CompareOp::Equal, created);
                let undo = Txn::new()
                    .when([ours])
                    .and_then([TxnOp::delete(outside, None::<DeleteOptions>)]);
                let undoing = format!("delete {outside}, which this run created");
                ExitBudget::new(args.connect.dial_timeout)
                    .call(undoing, client.txn(undo))
                    .await?;
            }
            bail!(
                "etcd allowed {user} to write {outside}, outside {prefix}: its roles grant more than the \
                 prefix (or auth is not enabled); run this with the limited user of `scripts/etcd.sh up --secure`"
            );
        }
    }
}

/// 5. A client that trusts etcd's CA but has no certificate of its own. With --client-cert-auth, etcd
///    ends the TLS handshake: such a client never gets as far as asking for a password.
async fn without_a_certificate(connect: &ConnectArgs) {
    let anonymous = ConnectArgs {
        secure: connect.secure.without_identity(),
        ..connect.clone()
    };
    match etcd_connect::connect(&anonymous).await {
        Err(e) => {
            println!("5. connect again without a client certificate: refused");
            println!("   {}", recipes::errors::one_line(&e));
        }
        Ok(_) => println!(
            "5. without a client certificate: accepted. This etcd does not run with --client-cert-auth, so \
             any client that trusts its CA may connect, and only users and roles protect the keys"
        ),
    }
}

/// `ca.crt` for `.etcd/secure/certs/ca.crt`.
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
