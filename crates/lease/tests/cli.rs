//! The real `lease` binary, end to end, against a throwaway etcd.

use std::time::Duration;

use test_etcd::{
    assert_clean_failure, assert_fails_fast_on_dead_endpoint, assert_refused, eventually,
    get_value, lease_exists, lease_ids, lease_of, put, Bin, Signal, TestEtcd,
};

const LEASE: &str = env!("CARGO_BIN_EXE_lease");
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

#[tokio::test]
async fn key_is_deleted_when_the_ttl_runs_out_and_the_program_says_expired() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(LEASE, &etcd.endpoint(), &["--ttl", "2", "--key", "/t/name"]);

    let (id, ttl) = granted(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("2. put /t/name = ferris", LIMIT).await;
    assert_eq!(
        lease_of(&mut client, "/t/name").await,
        Some(id),
        "the printed ID is the key's lease in etcd"
    );
    let countdown = bin.line_containing("left of", LIMIT).await;
    assert!(countdown.contains("keys: /t/name"), "{countdown}");

    let expired = bin
        .line_containing("expired", Duration::from_secs(ttl + 5))
        .await;
    assert!(
        bin.elapsed() >= Duration::from_secs(ttl),
        "deleted before the TTL ran out: {expired}"
    );
    assert!(expired.contains("/t/name expired after"), "{expired}");
    assert_eq!(
        get_value(&mut client, "/t/name").await,
        None,
        "expired means gone"
    );
    assert!(!lease_exists(&mut client, id).await);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
}

#[tokio::test]
async fn no_wait_exits_at_once_and_etcd_still_deletes_the_key() {
    let etcd = TestEtcd::start().await;
    let out = Bin::run(LEASE, &etcd.endpoint(), &["--ttl", "2", "--no-wait"], LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    let (id, ttl) = granted(
        out.stdout
            .lines()
            .find(|l| l.contains("1. granted lease"))
            .expect("step 1 is printed"),
    );
    assert!(out.stdout.contains("not waiting"), "{}", out.stdout);
    assert!(!out.stdout.contains("expired"), "{}", out.stdout);

    let mut client = etcd.client().await;
    assert_eq!(
        lease_of(&mut client, "name").await,
        Some(id),
        "still there on its lease"
    );
    eventually(
        "name to vanish within TTL + 1 s",
        Duration::from_secs(ttl + 1),
        || {
            let mut client = client.clone();
            async move { get_value(&mut client, "name").await.is_none().then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn ctrl_c_and_sigterm_revoke_the_lease_so_the_key_goes_at_once() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    for (signal, name) in [(Signal::SIGINT, "Ctrl-C"), (Signal::SIGTERM, "SIGTERM")] {
        let mut bin = Bin::spawn(LEASE, &etcd.endpoint(), &["--ttl", "60"]);
        let (id, _) = granted(&bin.line_containing("1. granted lease", LIMIT).await);
        bin.line_containing("3. watching", LIMIT).await;
        assert_eq!(lease_of(&mut client, "name").await, Some(id));

        bin.signal(signal);
        let out = bin.finish(LIMIT).await;
        assert!(out.status.success(), "{name}: {out:#?}");
        assert!(
            out.stdout
                .contains(&format!("{name}: revoked lease {id:016x}")),
            "{}",
            out.stdout
        );
        // No `eventually`: a revoke deletes the keys before it answers.
        assert_eq!(get_value(&mut client, "name").await, None, "{name}");
        assert!(!lease_exists(&mut client, id).await, "{name}");
    }
}

#[tokio::test]
async fn a_key_deleted_by_someone_else_is_not_reported_as_expired() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(LEASE, &etcd.endpoint(), &["--ttl", "60"]);
    let (id, _) = granted(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("3. watching", LIMIT).await;

    client.delete("name", None).await.expect("delete works");
    let out = bin.finish(LIMIT).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains("deleted by another client"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("expired"), "{}", out.stdout);
    assert!(
        !lease_exists(&mut client, id).await,
        "the useless lease is revoked"
    );
}

#[tokio::test]
async fn a_lease_revoked_elsewhere_is_reported_as_revoked_not_expired() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(LEASE, &etcd.endpoint(), &["--ttl", "60"]);
    let (id, _) = granted(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("3. watching", LIMIT).await;

    // What `etcdctl lease revoke <id>` does.
    client.lease_revoke(id).await.expect("revoke works");
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    let step4 = out
        .stdout
        .lines()
        .find(|l| l.starts_with("4. "))
        .unwrap_or_else(|| panic!("step 4 is printed: {}", out.stdout));
    assert!(
        step4.contains(&format!("lease {id:016x} was revoked after"))
            && step4.contains("before its TTL of 60s ran out"),
        "{step4}"
    );
    assert!(!out.stdout.contains("expired"), "{}", out.stdout);
    assert_eq!(get_value(&mut client, "name").await, None);
}

#[tokio::test]
async fn a_key_overwritten_off_the_lease_ends_the_program_and_revokes_the_lease() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(LEASE, &etcd.endpoint(), &["--ttl", "60"]);
    let (id, _) = granted(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("3. watching", LIMIT).await;

    client
        .put("name", "mine now", None)
        .await
        .expect("put works");
    let out = bin.finish(LIMIT).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains(&format!(
            "another client overwrote name without lease {id:016x}"
        )) && out.stderr.contains(&format!("revoked lease {id:016x}")),
        "{}",
        out.stderr
    );
    assert!(
        !lease_exists(&mut client, id).await,
        "the useless lease is revoked"
    );
    assert_eq!(
        get_value(&mut client, "name").await.as_deref(),
        Some("mine now"),
        "the other client's key is not on the lease, so the revoke leaves it"
    );
}

#[tokio::test]
async fn after_sigkill_the_key_stays_until_the_ttl_runs_out_then_goes() {
    use std::os::unix::process::ExitStatusExt;
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(LEASE, &etcd.endpoint(), &["--ttl", "3"]);
    let (id, ttl) = granted(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("3. watching", LIMIT).await;

    bin.signal(Signal::SIGKILL);
    let killed = std::time::Instant::now();
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
async fn a_tiny_ttl_is_raised_by_the_server_and_the_program_prints_the_granted_one() {
    let etcd = TestEtcd::start().await;
    let out = Bin::run(LEASE, &etcd.endpoint(), &["--ttl", "1", "--no-wait"], LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    let (id, ttl) = granted(
        out.stdout
            .lines()
            .find(|l| l.contains("1. granted lease"))
            .expect("step 1 is printed"),
    );
    assert!(ttl > 1, "etcd granted {ttl}s for 1s: {}", out.stdout);
    let mut client = etcd.client().await;
    let status = client
        .lease_time_to_live(id, None)
        .await
        .expect("asking works");
    assert_eq!(
        status.granted_ttl(),
        ttl as i64,
        "the printed TTL is etcd's"
    );
    assert!(
        out.stdout.contains(&format!("disappears in about {ttl}s")),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn bad_input_is_refused_without_granting_anything() {
    let etcd = TestEtcd::start().await;
    for (args, why) in [
        (vec!["--ttl", "0"], "0 is not in 1..="),
        (vec!["--ttl", "-5"], "-5 is not in 1..="),
        (vec!["--ttl", "soon"], "invalid digit"),
        (vec!["--key", ""], "--key"),
    ] {
        assert_refused(LEASE, &etcd.endpoint(), &args, why).await;
    }
    let mut client = etcd.client().await;
    let leases = client.leases().await.expect("listing leases works");
    assert!(leases.leases().is_empty(), "no lease was granted");
    assert_eq!(get_value(&mut client, "name").await, None);
}

#[tokio::test]
async fn a_key_that_exists_is_refused_before_anything_is_written_and_stays_as_it_was() {
    // Issue 15: `etcdctl put name mine`, then `cargo run -p lease -- --ttl 3` put `name` on its lease,
    // and etcd deleted the user's key when the lease ran out.
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let written = put(&mut client, "name", "mine").await;
    let out = assert_refused(
        LEASE,
        &etcd.endpoint(),
        &["--ttl", "3"],
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
    assert_fails_fast_on_dead_endpoint(LEASE, &[]).await;
}
