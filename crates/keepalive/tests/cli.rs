//! The real `keepalive` binary, end to end, against a throwaway etcd.

use std::time::{Duration, Instant};

use test_etcd::{
    assert_clean_failure, assert_fails_fast_on_dead_endpoint, assert_refused, eventually,
    get_value, lease_exists, lease_ids, lease_of, put, Bin, Signal, TestEtcd,
};

const KEEPALIVE: &str = env!("CARGO_BIN_EXE_keepalive");
const LIMIT: Duration = Duration::from_secs(30);

/// The lease ID and TTL from the line `1. granted lease <hex> with a TTL of <n>s`.
fn granted(line: &str) -> (i64, u64) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "lease")
        .unwrap_or_else(|| panic!("no lease ID in {line:?}"));
    let id = u64::from_str_radix(words[at + 1], 16)
        .unwrap_or_else(|e| panic!("bad lease ID in {line:?}: {e}")) as i64;
    let ttl = words
        .last()
        .and_then(|w| w.strip_suffix('s'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no TTL at the end of {line:?}"));
    (id, ttl)
}

/// Starts the binary and waits until the key is on its lease; returns the lease ID and TTL.
async fn start(etcd: &TestEtcd, args: &[&str]) -> (Bin, i64, u64) {
    let mut bin = Bin::spawn(KEEPALIVE, &etcd.endpoint(), args);
    let (id, ttl) = granted(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("2. put", LIMIT).await;
    (bin, id, ttl)
}

#[tokio::test]
async fn the_key_outlives_twice_its_ttl_while_renewed_and_goes_at_once_on_ctrl_c() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (mut bin, id, ttl) = start(&etcd, &["--ttl", "2"]).await;
    // The key was put before this instant, so without renewals it would be gone by `put_seen + ttl`.
    let put_seen = Instant::now();

    let mut answers = 0;
    while put_seen.elapsed() <= Duration::from_secs(2 * ttl) {
        let line = bin.line_containing("ttl:", LIMIT).await;
        assert!(line.contains(&format!("ttl: {ttl} ")), "{line}");
        answers += 1;
    }
    assert!(answers >= 3, "renewed every TTL/3, got {answers} answers");
    assert_eq!(
        lease_of(&mut client, "name").await,
        Some(id),
        "still there after {:?}",
        put_seen.elapsed()
    );

    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout
            .contains(&format!("Ctrl-C: revoked lease {id:016x}")),
        "{}",
        out.stdout
    );
    // No `eventually`: a revoke deletes the keys before it answers.
    assert_eq!(get_value(&mut client, "name").await, None);
    assert!(!lease_exists(&mut client, id).await);
}

#[tokio::test]
async fn sigterm_revokes_the_lease_too() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    // A long TTL, so a key gone right after exit can only be the revoke's doing.
    let (mut bin, id, _) = start(&etcd, &["--ttl", "60"]).await;
    bin.line_containing("3. keep-alive stream open", LIMIT)
        .await;
    assert_eq!(lease_of(&mut client, "name").await, Some(id));

    bin.signal(Signal::SIGTERM);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains("SIGTERM: revoked lease"),
        "{}",
        out.stdout
    );
    assert_eq!(get_value(&mut client, "name").await, None);
    assert!(!lease_exists(&mut client, id).await);
}

#[tokio::test]
async fn after_sigkill_the_key_stays_until_the_ttl_runs_out_then_goes() {
    use std::os::unix::process::ExitStatusExt;
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (mut bin, id, ttl) = start(&etcd, &["--ttl", "3"]).await;
    bin.line_containing("ttl:", LIMIT).await;

    bin.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let out = bin.finish(LIMIT).await;
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGKILL as i32),
        "{out:#?}"
    );
    assert_eq!(
        lease_of(&mut client, "name").await,
        Some(id),
        "nobody revoked the lease, so the key is still there"
    );

    eventually(
        "name to vanish within TTL + 1 s of the kill",
        Duration::from_secs(ttl + 1).saturating_sub(killed.elapsed()),
        || {
            let mut client = client.clone();
            async move { get_value(&mut client, "name").await.is_none().then_some(()) }
        },
    )
    .await;
    assert!(!lease_exists(&mut client, id).await, "the lease expired");
}

#[tokio::test]
async fn count_stops_after_that_many_answers_and_revokes() {
    let etcd = TestEtcd::start().await;
    let out = Bin::run(
        KEEPALIVE,
        &etcd.endpoint(),
        &["--count", "2", "--ttl", "2", "--key", "/svc/a"],
        LIMIT,
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    let answers = out.stdout.lines().filter(|l| l.contains("ttl:")).count();
    assert_eq!(answers, 2, "{}", out.stdout);
    assert!(
        out.stdout.contains("--count reached: revoked lease"),
        "{}",
        out.stdout
    );
    let (id, _) = granted(
        out.stdout
            .lines()
            .find(|l| l.contains("1. granted lease"))
            .expect("step 1 is printed"),
    );
    let mut client = etcd.client().await;
    assert_eq!(get_value(&mut client, "/svc/a").await, None);
    assert!(!lease_exists(&mut client, id).await);
}

#[tokio::test]
async fn a_lease_revoked_elsewhere_ends_the_program_with_an_error() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let (mut bin, id, _) = start(&etcd, &["--ttl", "2"]).await;
    bin.line_containing("ttl:", LIMIT).await;

    client.lease_revoke(id).await.expect("revoke works");
    let out = bin.finish(LIMIT).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains(&format!(
            "lease {id:016x} is gone: etcd answered a renewal with TTL 0; it was revoked"
        )) && out.stderr.contains("etcd deleted name with it"),
        "timing tells a revoke from an expiry here, and the key is read back: {}",
        out.stderr
    );
    assert_eq!(get_value(&mut client, "name").await, None);
}

#[tokio::test]
async fn a_broken_stream_is_reopened_while_the_lease_is_alive() {
    let mut etcd = TestEtcd::start().await;
    let (mut bin, id, _) = start(&etcd, &["--ttl", "6"]).await;
    bin.line_containing("ttl:", LIMIT).await;

    // Kill etcd and start it again on the same data: the stream breaks, the lease survives on disk.
    etcd.restart().await;
    let broke = bin.line_containing("keep-alive stream", LIMIT).await;
    assert!(broke.contains("broke"), "{broke}");
    bin.line_containing("keep-alive stream re-opened", LIMIT)
        .await;
    bin.line_containing("ttl:", LIMIT).await;

    let mut client = etcd.client().await;
    assert_eq!(lease_of(&mut client, "name").await, Some(id));
    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(get_value(&mut client, "name").await, None);
}

#[tokio::test]
async fn bad_input_is_refused_without_granting_anything() {
    let etcd = TestEtcd::start().await;
    for (args, why) in [
        (vec!["--ttl", "0"], "0 is not in 1..="),
        (vec!["--ttl", "-5"], "-5 is not in 1..="),
        (vec!["--count", "0"], "0 is not in 1..="),
        (vec!["--count", "-1"], "-1 is not in 1..="),
        (vec!["--key", ""], "--key"),
    ] {
        assert_refused(KEEPALIVE, &etcd.endpoint(), &args, why).await;
    }
    let mut client = etcd.client().await;
    let leases = client.leases().await.expect("listing leases works");
    assert!(leases.leases().is_empty(), "no lease was granted");
    assert_eq!(get_value(&mut client, "name").await, None);
}

#[tokio::test]
async fn a_key_that_exists_is_refused_before_anything_is_written_and_stays_as_it_was() {
    // Issue 15: `etcdctl put name mine`, then `cargo run -p keepalive` and Ctrl-C (here `--count 1`,
    // which stops the same way) revoked the lease it had put `name` on, and the user's key went with it.
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let written = put(&mut client, "name", "mine").await;
    let out = assert_refused(
        KEEPALIVE,
        &etcd.endpoint(),
        &["--ttl", "2", "--count", "1"],
        "name already exists",
    )
    .await;
    assert!(
        out.stderr.contains("--key") && out.stderr.contains("`etcdctl del name`"),
        "says what to do: {out:#?}"
    );
    assert!(!out.stdout.contains("granted"), "nothing granted: {out:#?}");
    // Read back: the same value, never written again, on no lease; and no lease was granted.
    let now = client.get("name", None).await.expect("a get works");
    let kv = &now.kvs()[0];
    let seen = (kv.value(), kv.mod_revision(), kv.lease());
    assert_eq!(seen, (&b"mine"[..], written, 0), "{out:#?}");
    assert!(lease_ids(&mut client).await.is_empty(), "{out:#?}");
}

#[tokio::test]
async fn dead_endpoint_fails_fast_with_one_clear_line() {
    assert_fails_fast_on_dead_endpoint(KEEPALIVE, &[]).await;
}
