//! The real `lock` binary, end to end, against a throwaway etcd.

use std::time::{Duration, Instant};

use etcd_client::Client;
use lock::LockKey;
use test_etcd::{
    assert_clean_failure, assert_fails_fast_on_dead_endpoint, assert_refused, eventually,
    keys_under, lease_ids, Bin, Output, Signal, TestEtcd,
};

const LOCK: &str = env!("CARGO_BIN_EXE_lock");
const LIMIT: Duration = Duration::from_secs(20);
const SHORT: Duration = Duration::from_secs(10);

/// Waits until `count` contenders are queued under `/lock/`, and returns their keys.
async fn queued(client: &Client, count: usize) -> Vec<String> {
    eventually(&format!("{count} keys under /lock/"), SHORT, || {
        let mut client = client.clone();
        async move {
            let keys = keys_under(&mut client, "/lock/").await;
            (keys.len() == count).then_some(keys)
        }
    })
    .await
}

/// One `acquired <key> rev=<n> at=<ms>` ... `released <key> at=<ms>` pair from a contender's output.
#[derive(Debug)]
struct Turn {
    key: String,
    create_revision: i64,
    acquired_at: u128,
    released_at: u128,
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

fn turn_of(out: &Output) -> Turn {
    let acquired = out
        .stdout
        .lines()
        .find(|l| l.starts_with("acquired "))
        .unwrap_or_else(|| panic!("no acquired line: {out:#?}"));
    let released = out
        .stdout
        .lines()
        .find(|l| l.starts_with("released "))
        .unwrap_or_else(|| panic!("no released line: {out:#?}"));
    let key = acquired.split_whitespace().nth(1).expect("key").to_string();
    assert_eq!(
        released.split_whitespace().nth(1),
        Some(key.as_str()),
        "{out:#?}"
    );
    Turn {
        key,
        create_revision: field(acquired, "rev=").parse().unwrap(),
        acquired_at: field(acquired, "at=").parse().unwrap(),
        released_at: field(released, "at=").parse().unwrap(),
    }
}

#[tokio::test]
async fn demo_prints_the_four_steps_in_order_and_leaves_nothing_behind() {
    let etcd = TestEtcd::start().await;
    let out = Bin::run(LOCK, &etcd.endpoint(), &[], LIMIT).await;
    assert!(out.status.success(), "{out:#?}");

    let position = |start: &str, words: &str| {
        let index = out
            .stdout
            .lines()
            .position(|l| l.starts_with(start) && l.contains(words));
        index.unwrap_or_else(|| panic!("no line {start:?}..{words:?} in:\n{}", out.stdout))
    };
    let steps = [
        position("1. ", "session 1 acquired /lock"),
        position("2. ", "session 2 is waiting for /lock"),
        position("3. ", "session 1 released /lock"),
        position("4. ", "session 2 acquired /lock"),
    ];
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{}", out.stdout);
    assert!(
        out.stdout.contains("session 2 (token")
            && out.stdout.contains("was accepted, session 1's late one"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("was rejected"), "{}", out.stdout);
    assert!(out.stdout.contains("(ttl 60s)"), "{}", out.stdout);

    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/lock").await.is_empty());
    assert!(keys_under(&mut client, "/demo/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0, "no lease left");
}

#[tokio::test]
async fn four_contenders_take_turns_without_overlap() {
    let etcd = TestEtcd::start().await;
    let contenders: Vec<Bin> = (0..4)
        .map(|_| Bin::spawn(LOCK, &etcd.endpoint(), &["--hold", "0.3"]))
        .collect();
    let mut turns = Vec::new();
    for bin in contenders {
        let out = bin.finish(LIMIT).await;
        assert!(out.status.success(), "{out:#?}");
        turns.push(turn_of(&out));
    }

    turns.sort_by_key(|t| t.acquired_at);
    for pair in turns.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            before.released_at <= after.acquired_at,
            "overlap: {before:?} then {after:?}"
        );
        assert!(
            before.create_revision < after.create_revision,
            "fencing tokens must grow: {turns:#?}"
        );
    }
    for turn in &turns {
        assert!(turn.acquired_at <= turn.released_at, "{turn:?}");
        assert!(turn.key.starts_with("/lock/"), "{turn:?}");
    }

    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn a_sigkilled_holder_is_replaced_once_its_lease_expires() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let ttl = 2;
    let ttl_arg = ttl.to_string();

    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", &ttl_arg, "--hold", "60"]);
    let acquired = holder.line_containing("acquired ", SHORT).await;
    let mut waiter = Bin::spawn(
        LOCK,
        &etcd.endpoint(),
        &["--ttl", &ttl_arg, "--hold", "0.1"],
    );
    waiter.line_containing("waiting for /lock", SHORT).await;
    queued(&client, 2).await;

    // A crash: no chance to unlock or revoke anything.
    holder.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let line = waiter
        .line_containing("acquired ", Duration::from_secs(ttl + 2))
        .await;
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_secs(ttl + 2),
        "took {waited:?} to take over"
    );
    assert_ne!(
        field(&line, "rev="),
        field(&acquired, "rev="),
        "a new holder"
    );

    let out = waiter.finish(SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    drop(holder);
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn try_gives_up_with_exit_code_2_on_a_taken_lock_and_acquires_a_free_one() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--hold", "60"]);
    let acquired = holder.line_containing("acquired ", SHORT).await;
    let holder_key = acquired.split_whitespace().nth(1).unwrap().to_string();

    let started = Instant::now();
    let out = Bin::run(LOCK, &etcd.endpoint(), &["--try", "--hold", "0.1"], LIMIT).await;
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "--try must not wait"
    );
    assert!(
        out.stderr.contains("/lock is taken") && out.stderr.contains(&holder_key),
        "names the holder: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(keys_under(&mut client, "/lock/").await, [holder_key]);
    assert_eq!(
        lease_ids(&mut client).await.len(),
        1,
        "only the holder's lease is left"
    );

    holder.signal(Signal::SIGINT);
    assert!(holder.finish(SHORT).await.status.success());

    let out = Bin::run(LOCK, &etcd.endpoint(), &["--try", "--hold", "0.1"], LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    turn_of(&out);
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn sigint_while_waiting_and_while_holding_exits_0_and_leaves_nothing() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--hold", "60"]);
    let acquired = holder.line_containing("acquired ", SHORT).await;
    let holder_key = acquired.split_whitespace().nth(1).unwrap().to_string();
    let mut waiter = Bin::spawn(LOCK, &etcd.endpoint(), &["--hold", "60"]);
    waiter.line_containing("waiting for /lock", SHORT).await;
    queued(&client, 2).await;

    waiter.signal(Signal::SIGINT);
    let out = waiter.finish(SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains("Ctrl-C: stopped waiting for /lock"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("acquired"), "{}", out.stdout);
    assert_eq!(
        keys_under(&mut client, "/lock/").await,
        [holder_key.as_str()],
        "the waiter's key is gone"
    );
    assert_eq!(lease_ids(&mut client).await.len(), 1);

    holder.signal(Signal::SIGINT);
    let out = holder.finish(SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains(&format!("released {holder_key} at=")),
        "{}",
        out.stdout
    );
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn a_waiter_acquires_at_once_when_the_holder_gets_sigterm() {
    let etcd = TestEtcd::start().await;
    let client = etcd.client().await;
    // A long TTL: if the waiter got the lock only by lease expiry, it would take 30 s.
    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", "30", "--hold", "60"]);
    holder.line_containing("acquired ", SHORT).await;
    let mut waiter = Bin::spawn(LOCK, &etcd.endpoint(), &["--hold", "0.1"]);
    waiter.line_containing("waiting for /lock", SHORT).await;
    queued(&client, 2).await;

    holder.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    waiter
        .line_containing("acquired ", Duration::from_secs(3))
        .await;
    assert!(signalled.elapsed() < Duration::from_secs(3));

    let out = holder.finish(SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains("SIGTERM: releasing /lock early"),
        "{}",
        out.stdout
    );
    assert!(waiter.finish(SHORT).await.status.success());
}

#[tokio::test]
async fn bad_input_is_refused_without_touching_etcd() {
    let etcd = TestEtcd::start().await;
    for (args, why) in [
        (vec!["--name", ""], "--name"),
        (vec!["--ttl", "0"], "--ttl"),
        // Negative numbers get the range error too, not clap's "unexpected argument '-1' found".
        (vec!["--ttl", "-1"], "-1 is not in 1..=86400"),
        (vec!["--hold", "-1"], "must be more than 0"),
        (vec!["--try", "--hold", "-1"], "must be more than 0"),
        (vec!["--hold", "0"], "more than 0"),
        (vec!["--hold", "soon"], "not a number"),
        (vec!["--try", "--hold", "0"], "more than 0"),
        (vec!["--bogus"], "unexpected argument"),
    ] {
        let out = assert_refused(LOCK, &etcd.endpoint(), &args, why).await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} exits 1, not 2 (2 means taken): {out:#?}"
        );
        // ETCD_ENDPOINTS is set, as in a user's shell: the usage line must not show it as required.
        assert!(!out.stderr.contains("--endpoints <"), "{out:#?}");
    }
    let mut client = etcd.client().await;
    assert_eq!(lease_ids(&mut client).await.len(), 0, "nothing was granted");
}

#[tokio::test]
async fn dead_endpoint_fails_fast_with_one_clear_line() {
    let out = assert_fails_fast_on_dead_endpoint(LOCK, &["--hold", "1"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
}

#[tokio::test]
async fn try_alone_takes_a_free_lock_holds_it_5s_and_exits_0() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(LOCK, &etcd.endpoint(), &["--try"]);
    let trying = bin.line_containing("trying /lock once", SHORT).await;
    assert!(trying.contains("hold 5s"), "{trying}");
    let acquired = bin.line_containing("acquired /lock/", SHORT).await;
    let key = acquired.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(keys_under(&mut client, "/lock/").await, [key.as_str()]);

    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    let turn = turn_of(&out);
    let held = turn.released_at - turn.acquired_at;
    assert!(
        (5_000..LIMIT.as_millis()).contains(&held),
        "--try alone holds the lock 5 s, held {held} ms: {out:#?}"
    );
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn try_alone_on_a_taken_lock_exits_2_and_leaves_nothing_behind() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--hold", "60"]);
    let acquired = holder.line_containing("acquired ", SHORT).await;
    let holder_key = acquired.split_whitespace().nth(1).unwrap().to_string();
    let holder_lease = lease_ids(&mut client).await;

    let started = Instant::now();
    let out = Bin::run(LOCK, &etcd.endpoint(), &["--try"], LIMIT).await;
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "--try must not wait"
    );
    assert!(
        out.stderr
            .contains(&format!("/lock is taken: held by {holder_key}")),
        "{out:#?}"
    );
    assert!(!out.stdout.contains("acquired"), "{out:#?}");
    assert_eq!(keys_under(&mut client, "/lock/").await, [holder_key]);
    assert_eq!(
        lease_ids(&mut client).await,
        holder_lease,
        "only the holder's lease is left"
    );

    holder.signal(Signal::SIGINT);
    assert!(holder.finish(SHORT).await.status.success());
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn help_names_the_exit_codes_and_the_default_hold_of_try() {
    let etcd = TestEtcd::start().await;
    let out = Bin::run(LOCK, &etcd.endpoint(), &["--help"], SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    let help = &out.stdout;
    assert!(help.contains("Usage: lock [OPTIONS]\n"), "{help}");
    let codes = help
        .split_once("Exit codes:")
        .unwrap_or_else(|| panic!("no exit codes in:\n{help}"))
        .1;
    for (code, meaning) in [("0", "done"), ("1", "error"), ("2", "taken")] {
        assert!(
            codes
                .lines()
                .any(|l| l.trim_start().starts_with(code) && l.contains(meaning)),
            "exit code {code} ({meaning}) is not explained:\n{help}"
        );
    }
    assert!(help.contains("5 if --hold is not given"), "{help}");
    let mut client = etcd.client().await;
    assert_eq!(
        lease_ids(&mut client).await.len(),
        0,
        "--help touches nothing"
    );
}

/// The `(lease <id>, ...` a contender prints on its `waiting for` / `trying` line.
fn lease_in(line: &str) -> i64 {
    let hex = line
        .split("(lease ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no lease in {line:?}"));
    i64::from_str_radix(hex, 16).unwrap()
}

#[tokio::test]
async fn holder_survives_a_short_etcd_restart() {
    let mut etcd = TestEtcd::start().await;
    // Held longer than its TTL: it only ends well if the renewals resumed after the restart.
    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", "5", "--hold", "8"]);
    let acquired = holder.line_containing("acquired ", SHORT).await;
    let key = acquired.split_whitespace().nth(1).unwrap().to_string();

    // A crash of etcd and a restart on the same data, well within the TTL.
    etcd.kill();
    etcd.restart().await;
    let mut client = etcd.client().await;
    assert_eq!(
        keys_under(&mut client, "/lock/").await,
        [key.as_str()],
        "the holder's key survived the restart"
    );

    let out = holder.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    let turn = turn_of(&out);
    assert_eq!(turn.key, key);
    assert_eq!(turn.create_revision.to_string(), field(&acquired, "rev="));
    assert!(
        turn.released_at - turn.acquired_at >= 8_000,
        "held for the whole --hold: {out:#?}"
    );
    assert!(!out.stderr.contains("WARN"), "no raw log line: {out:#?}");
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn waiter_survives_a_short_etcd_restart() {
    let mut etcd = TestEtcd::start().await;
    let client = etcd.client().await;
    let holder = {
        let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", "5", "--hold", "8"]);
        holder.line_containing("acquired ", SHORT).await;
        holder
    };
    let mut waiter = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", "5", "--hold", "0.3"]);
    let waiting = waiter.line_containing("waiting for /lock", SHORT).await;
    let waiter_key = format!("/lock/{:x}", lease_in(&waiting));
    queued(&client, 2).await;
    let mut client = client;
    let queued_at = client.get(waiter_key.as_str(), None).await.unwrap().kvs()[0].create_revision();

    etcd.kill();
    etcd.restart().await;

    let holder = holder.finish(LIMIT).await;
    assert!(holder.status.success(), "{holder:#?}");
    let waiter = waiter.finish(LIMIT).await;
    assert!(waiter.status.success(), "{waiter:#?}");
    // Its lock call broke with the connection, and it asked again rather than dying.
    assert!(
        waiter
            .stdout
            .contains("asking again with the same lease, which keeps its place in the queue if etcd still holds its key"),
        "{waiter:#?}"
    );
    let (first, second) = (turn_of(&holder), turn_of(&waiter));
    assert!(
        first.released_at <= second.acquired_at,
        "overlap: {first:?} then {second:?}"
    );
    assert_eq!(second.key, waiter_key);
    assert_eq!(
        second.create_revision, queued_at,
        "asking again with the same lease kept the waiter's place (and token) in the queue"
    );
    for out in [&holder, &waiter] {
        assert!(
            !out.stderr.contains("WARN") && !out.stderr.contains("error"),
            "{out:#?}"
        );
    }
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn holder_whose_lease_is_revoked_exits_non_zero_with_stale_token() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", "3", "--hold", "60"]);
    let waiting = holder.line_containing("waiting for /lock", SHORT).await;
    let acquired = holder.line_containing("acquired ", SHORT).await;
    let token = field(&acquired, "rev=").to_string();

    // An operator runs `etcdctl lease revoke` on the holder's lease: its lock key is deleted with it.
    client.lease_revoke(lease_in(&waiting)).await.unwrap();
    let revoked = Instant::now();
    let out = holder.finish(SHORT).await;
    assert!(
        revoked.elapsed() < Duration::from_secs(3),
        "noticed at the next renewal (TTL/3)"
    );
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains(&format!(
            "another process may hold it now, so token {token} is stale"
        )),
        "{out:#?}"
    );
    assert!(out.stderr.contains("no longer exists"), "{out:#?}");
    assert!(!out.stdout.contains("released"), "{out:#?}");
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn unlock_against_a_frozen_etcd_is_bounded_by_the_dial_timeout() {
    let etcd = TestEtcd::start().await;
    let dial_timeout = Duration::from_secs(2);
    let mut holder = Bin::spawn(
        LOCK,
        &etcd.endpoint(),
        &["--dial-timeout", "2", "--ttl", "5", "--hold", "60"],
    );
    let acquired = holder.line_containing("acquired ", SHORT).await;
    let key = acquired.split_whitespace().nth(1).unwrap().to_string();

    etcd.freeze();
    holder.signal(Signal::SIGINT);
    let signalled = Instant::now();
    let out = holder.finish(LIMIT).await;
    let took = signalled.elapsed();
    etcd.thaw();

    assert!(
        took < dial_timeout + Duration::from_secs(2),
        "took {took:?}: {out:#?}"
    );
    assert_clean_failure(&out);
    assert!(
        out.stdout.contains("Ctrl-C: releasing /lock early"),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains(&format!(
            "unlock {key}: etcd did not answer within 2s (--dial-timeout)"
        )) && out.stderr.contains("frees itself when lease"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains("KeepAliveTimedOut"), "{out:#?}");
    assert!(!out.stdout.contains("released"), "{out:#?}");
}

#[tokio::test]
async fn frozen_holder_past_its_ttl_loses_the_lock_to_the_next_contender() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", "2", "--hold", "60"]);
    let acquired = holder.line_containing("acquired ", SHORT).await;
    let stale = LockKey {
        key: acquired.split_whitespace().nth(1).unwrap().to_string(),
        create_revision: field(&acquired, "rev=").parse().unwrap(),
    };

    // The holder freezes (a GC pause, a paused VM): no renewals, so its lease runs out.
    holder.signal(Signal::SIGSTOP);
    let mut next = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", "5", "--hold", "60"]);
    let line = next.line_containing("acquired ", SHORT).await;
    let fresh = LockKey {
        key: line.split_whitespace().nth(1).unwrap().to_string(),
        create_revision: field(&line, "rev=").parse().unwrap(),
    };
    assert!(fresh.create_revision > stale.create_revision);

    // The frozen holder's token is refused by a fenced write; the new holder's is accepted.
    assert_eq!(
        lock::put_if_holder(&mut client, &stale, "/res", "late")
            .await
            .unwrap(),
        None
    );
    assert!(lock::put_if_holder(&mut client, &fresh, "/res", "current")
        .await
        .unwrap()
        .is_some());

    // Woken up, the old holder finds its session lost and stops, naming its token as stale.
    holder.signal(Signal::SIGCONT);
    let out = holder.finish(SHORT).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr
            .contains(&format!("so token {} is stale", stale.create_revision)),
        "{out:#?}"
    );
    assert!(!out.stdout.contains("released"), "{out:#?}");
    assert_eq!(
        test_etcd::get_value(&mut client, "/res").await.as_deref(),
        Some("current")
    );
    assert_eq!(
        keys_under(&mut client, "/lock/").await,
        [fresh.key.as_str()]
    );

    next.signal(Signal::SIGINT);
    assert!(next.finish(SHORT).await.status.success());
    client.delete("/res", None).await.unwrap();
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn demo_refuses_to_start_when_its_protected_key_holds_someone_elses_data() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    test_etcd::put(&mut client, "/demo/protected-config", "the learner's own").await;

    let out = assert_refused(
        LOCK,
        &etcd.endpoint(),
        &[],
        "/demo/protected-config already exists",
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert_eq!(
        test_etcd::get_value(&mut client, "/demo/protected-config")
            .await
            .as_deref(),
        Some("the learner's own"),
        "left untouched"
    );
    assert!(keys_under(&mut client, "/lock").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0, "nothing was granted");
}

#[tokio::test]
async fn demo_refuses_at_once_when_someone_holds_or_waits_for_the_lock() {
    // The issue that found it: with any key under /lock/ the demo printed its lease line, then waited
    // without a word behind that key, and on SIGTERM claimed that nothing was left under /lock/.
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    test_etcd::put(&mut client, "/lock/user", "x").await;
    let out = assert_refused(
        LOCK,
        &etcd.endpoint(),
        &["--dial-timeout", "20"],
        "/lock/ already holds 1 key(s) (/lock/user)",
    )
    .await;
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out:#?}");
    assert!(!out.stdout.contains("session 1"), "{out:#?}");
    assert_eq!(
        test_etcd::get_value(&mut client, "/lock/user")
            .await
            .as_deref(),
        Some("x"),
        "left untouched"
    );
    assert_eq!(lease_ids(&mut client).await.len(), 0, "nothing was granted");
    client.delete("/lock/user", None).await.unwrap();

    // A contender from the README, holding the lock: the demo names its key.
    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--hold", "60"]);
    let acquired = holder.line_containing("acquired ", SHORT).await;
    let key = acquired.split_whitespace().nth(1).unwrap().to_string();
    assert_refused(
        LOCK,
        &etcd.endpoint(),
        &[],
        &format!("/lock/ already holds 1 key(s) ({key})"),
    )
    .await;
    assert_eq!(keys_under(&mut client, "/lock/").await, [key.as_str()]);
    holder.signal(Signal::SIGINT);
    assert!(holder.finish(SHORT).await.status.success());
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn a_waiter_whose_key_was_deleted_while_its_lease_lives_queues_again() {
    // What etcd does after a freeze that broke the waiter's connection: the lock call it saw cancelled
    // deletes `/lock/<lease>` when it ends on the server, after the waiter's call made again had already
    // found that key and queued with it. That call then answers once the holder is gone, for a key that
    // no longer exists. Here the test deletes the key itself, so that the order is always that one.
    let etcd = TestEtcd::start().await;
    let client = etcd.client().await;
    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", "30", "--hold", "60"]);
    holder.line_containing("acquired ", SHORT).await;
    holder.wait_until_catching(Signal::SIGINT, SHORT).await;
    let mut waiter = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", "30", "--hold", "0.3"]);
    let waiting = waiter.line_containing("waiting for /lock", SHORT).await;
    let lease = lease_in(&waiting);
    let waiter_key = format!("/lock/{lease:x}");
    queued(&client, 2).await;
    let mut client = client;
    test_etcd::delete(&mut client, &waiter_key).await;

    holder.signal(Signal::SIGINT);
    let holder = holder.finish(LIMIT).await;
    assert!(holder.status.success(), "{holder:#?}");
    waiter
        .line_containing(
            &format!(
                "our key {waiter_key} was deleted while we waited, although lease {lease:016x} is alive"
            ),
            SHORT,
        )
        .await;
    let waiter = waiter.finish(LIMIT).await;
    assert!(waiter.status.success(), "{waiter:#?}");
    assert!(!waiter.stderr.contains("vanished"), "{waiter:#?}");
    let (first, second) = (turn_of(&holder), turn_of(&waiter));
    assert_eq!(second.key, waiter_key);
    assert!(first.released_at <= second.acquired_at);
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn holder_whose_key_is_deleted_while_its_lease_lives_stops_with_a_stale_token() {
    // Its lease lives, but its key is gone: `etcdctl del`, or etcd ending late a lock call of this
    // holder's that a broken connection cancelled. Someone else may take the lock at once, so the holder
    // must stop rather than hold on for its whole --hold.
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut holder = Bin::spawn(LOCK, &etcd.endpoint(), &["--ttl", "30", "--hold", "60"]);
    let waiting = holder.line_containing("waiting for /lock", SHORT).await;
    let acquired = holder.line_containing("acquired ", SHORT).await;
    let key = acquired.split_whitespace().nth(1).unwrap().to_string();
    let token = field(&acquired, "rev=").to_string();

    let deleted_at = test_etcd::delete(&mut client, &key).await;
    let out = holder.finish(SHORT).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains(&format!(
            "etcd deleted its key {key} at revision {deleted_at}, although lease {:016x} is alive",
            lease_in(&waiting)
        )) && out.stderr.contains(&format!("so token {token} is stale")),
        "{out:#?}"
    );
    assert!(!out.stdout.contains("released"), "{out:#?}");
    assert!(keys_under(&mut client, "/lock/").await.is_empty());
    assert_eq!(
        lease_ids(&mut client).await.len(),
        0,
        "the lease was revoked"
    );
}
