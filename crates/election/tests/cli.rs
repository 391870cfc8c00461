//! The real `election` binary, end to end, against a throwaway etcd.

use std::time::{Duration, Instant};

use etcd_client::{Client, LeaderKey, ProclaimOptions};
use test_etcd::{
    assert_clean_failure, assert_fails_fast_on_dead_endpoint, assert_refused, eventually,
    keys_under, lease_ids, Bin, Output, Signal, TestEtcd,
};

const ELECTION: &str = env!("CARGO_BIN_EXE_election");
const LIMIT: Duration = Duration::from_secs(20);
const SHORT: Duration = Duration::from_secs(10);

/// Waits until `count` candidates stand under `/election/`, and returns their keys.
async fn standing(client: &Client, count: usize) -> Vec<String> {
    eventually(&format!("{count} keys under /election/"), SHORT, || {
        let mut client = client.clone();
        async move {
            let keys = keys_under(&mut client, "/election/").await;
            (keys.len() == count).then_some(keys)
        }
    })
    .await
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// The `(lease <id>, ...` a candidate prints on its `campaigns for` line.
fn lease_in(line: &str) -> i64 {
    let hex = line
        .split("(lease ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no lease in {line:?}"));
    i64::from_str_radix(hex, 16).unwrap()
}

/// One `leader <id> rev=<n> at=<ms>` ... `resigned <id> at=<ms>` pair from a candidate's output.
#[derive(Debug)]
struct Term {
    id: String,
    rev: i64,
    from: u128,
    until: u128,
}

fn term_of(out: &Output) -> Term {
    let line = |start: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} line: {out:#?}"))
    };
    let (leader, resigned) = (line("leader "), line("resigned "));
    let id = leader.split_whitespace().nth(1).expect("id").to_string();
    assert_eq!(
        resigned.split_whitespace().nth(1),
        Some(id.as_str()),
        "{out:#?}"
    );
    Term {
        id,
        rev: field(leader, "rev=").parse().unwrap(),
        from: field(leader, "at=").parse().unwrap(),
        until: field(resigned, "at=").parse().unwrap(),
    }
}

#[tokio::test]
async fn three_candidates_never_have_overlapping_leader_intervals() {
    let etcd = TestEtcd::start().await;
    let candidates: Vec<Bin> = ["a", "b", "c"]
        .iter()
        .map(|id| Bin::spawn(ELECTION, &etcd.endpoint(), &["--id", id, "--hold", "0.5"]))
        .collect();
    let mut terms = Vec::new();
    for bin in candidates {
        let out = bin.finish(LIMIT).await;
        assert!(out.status.success(), "{out:#?}");
        terms.push(term_of(&out));
    }

    terms.sort_by_key(|t| t.from);
    let ids: Vec<&str> = terms.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        {
            let mut sorted = ids.clone();
            sorted.sort();
            sorted
        },
        ["a", "b", "c"],
        "each led once: {terms:#?}"
    );
    for term in &terms {
        assert!(term.until - term.from >= 500, "led for --hold: {term:?}");
    }
    for pair in terms.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            before.until <= after.from,
            "overlap: {before:?} then {after:?}"
        );
        assert!(before.rev < after.rev, "revisions grow: {terms:#?}");
    }

    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn a_sigkilled_leader_is_replaced_within_ttl_plus_2s() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let ttl = 2;
    let ttl_arg = ttl.to_string();

    let mut leader = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &["--id", "a", "--ttl", &ttl_arg, "--hold", "60"],
    );
    let led = leader.line_containing("leader a ", SHORT).await;
    let mut next = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &["--id", "b", "--ttl", &ttl_arg, "--hold", "0.1"],
    );
    let campaigns = next.line_containing("b campaigns for", SHORT).await;
    assert!(campaigns.ends_with("a leads now"), "{campaigns}");
    standing(&client, 2).await;

    // A crash: no chance to resign or revoke anything. Its key stays until its lease expires.
    leader.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let line = next
        .line_containing("leader b ", Duration::from_secs(ttl + 2))
        .await;
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_secs(ttl + 2),
        "took {waited:?} to take over"
    );
    assert!(
        field(&line, "rev=").parse::<i64>().unwrap() > field(&led, "rev=").parse::<i64>().unwrap()
    );

    let out = next.finish(SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    drop(leader);
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn an_observer_sees_each_change() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut observer = Bin::spawn(ELECTION, &etcd.endpoint(), &["--observe"]);
    observer
        .line_containing("nobody leads /election yet", SHORT)
        .await;
    observer.line_containing("observing /election", SHORT).await;

    // a leads, b waits behind it.
    let mut a = Bin::spawn(ELECTION, &etcd.endpoint(), &["--id", "a", "--hold", "60"]);
    let campaigns = a.line_containing("a campaigns for", SHORT).await;
    let led = a.line_containing("leader a ", SHORT).await;
    let seen = observer.line_containing("leader of /election", SHORT).await;
    let key_a = format!("/election/{:x}", lease_in(&campaigns));
    assert_eq!(
        seen,
        format!(
            "leader of /election is now a (rev={}, key {key_a})",
            field(&led, "rev=")
        )
    );
    let mut b = Bin::spawn(ELECTION, &etcd.endpoint(), &["--id", "b", "--hold", "60"]);
    b.line_containing("b campaigns for", SHORT).await;
    standing(&client, 2).await;

    // a proclaims a new value (here from the test, with a's leader key: the binary has no proclaim flag).
    let rev: i64 = field(&led, "rev=").parse().unwrap();
    let leader_key = LeaderKey::new()
        .with_name("/election")
        .with_key(key_a.clone())
        .with_rev(rev)
        .with_lease(lease_in(&campaigns));
    let proclaimed = client
        .proclaim("a-v2", Some(ProclaimOptions::new().with_leader(leader_key)))
        .await
        .unwrap();
    let at = proclaimed.header().unwrap().revision();
    let seen = observer.line_containing("leader of /election", SHORT).await;
    assert_eq!(
        seen,
        format!(
            "leader of /election is now a-v2 (rev={rev}, key {key_a}, proclaimed at revision {at})"
        )
    );

    // a resigns (Ctrl-C): b is elected, and the observer says so.
    a.signal(Signal::SIGINT);
    assert!(a.finish(SHORT).await.status.success());
    let led_b = b.line_containing("leader b ", SHORT).await;
    let seen = observer.line_containing("leader of /election", SHORT).await;
    assert!(
        seen.starts_with(&format!(
            "leader of /election is now b (rev={}, key /election/",
            field(&led_b, "rev=")
        )),
        "{seen}"
    );
    b.signal(Signal::SIGINT);
    assert!(b.finish(SHORT).await.status.success());

    // SIGTERM stops the observer, exit 0; it printed exactly the three changes.
    observer.signal(Signal::SIGTERM);
    let out = observer.finish(SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.ends_with("SIGTERM: stopped observing /election"),
        "{out:#?}"
    );
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("leader of"))
            .count(),
        3,
        "{out:#?}"
    );
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn sigint_while_leading_resigns_at_once_and_exits_0() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    // A long TTL: if b were elected only by lease expiry, it would take 30 s.
    let mut a = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &["--id", "a", "--ttl", "30", "--hold", "60"],
    );
    a.line_containing("leader a ", SHORT).await;
    let mut b = Bin::spawn(ELECTION, &etcd.endpoint(), &["--id", "b", "--hold", "0.1"]);
    b.line_containing("b campaigns for", SHORT).await;
    standing(&client, 2).await;

    a.signal(Signal::SIGINT);
    let signalled = Instant::now();
    b.line_containing("leader b ", Duration::from_secs(3)).await;
    assert!(signalled.elapsed() < Duration::from_secs(3));

    let out = a.finish(SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let resigning = lines
        .iter()
        .position(|l| *l == "Ctrl-C: resigning early")
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert!(
        lines[resigning + 1].starts_with("resigned a at="),
        "{out:#?}"
    );
    assert!(
        lines[resigning + 2].starts_with("session ended: revoked lease"),
        "{out:#?}"
    );
    assert!(b.finish(SHORT).await.status.success());
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn sigint_while_waiting_exits_0_and_leaves_no_key() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut a = Bin::spawn(ELECTION, &etcd.endpoint(), &["--id", "a", "--hold", "60"]);
    let campaigns = a.line_containing("a campaigns for", SHORT).await;
    a.line_containing("leader a ", SHORT).await;
    let key_a = format!("/election/{:x}", lease_in(&campaigns));
    let mut b = Bin::spawn(ELECTION, &etcd.endpoint(), &["--id", "b", "--hold", "60"]);
    b.line_containing("b campaigns for", SHORT).await;
    standing(&client, 2).await;

    b.signal(Signal::SIGINT);
    let out = b.finish(SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout
            .contains("Ctrl-C: stopped campaigning for /election"),
        "{out:#?}"
    );
    assert!(!out.stdout.contains("leader b"), "{out:#?}");
    assert_eq!(
        keys_under(&mut client, "/election/").await,
        [key_a.as_str()],
        "b's key is gone, a's stays"
    );
    assert_eq!(lease_ids(&mut client).await.len(), 1);

    a.signal(Signal::SIGTERM);
    let out = a.finish(SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stdout.contains("SIGTERM: resigning early"), "{out:#?}");
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn a_leader_whose_lease_is_revoked_says_it_is_no_longer_leader_and_exits_1() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut a = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &["--id", "a", "--ttl", "3", "--hold", "60"],
    );
    let campaigns = a.line_containing("a campaigns for", SHORT).await;
    a.line_containing("leader a ", SHORT).await;

    // An operator runs `etcdctl lease revoke` on the leader's lease: its key is deleted with it.
    client.lease_revoke(lease_in(&campaigns)).await.unwrap();
    let revoked = Instant::now();
    let out = a.finish(SHORT).await;
    assert!(
        revoked.elapsed() < Duration::from_secs(3),
        "noticed at the next renewal (TTL/3)"
    );
    assert_clean_failure(&out);
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains("a lost the leadership of /election while leading")
            && out.stderr.contains("it is no longer leader")
            && out.stderr.contains("no longer exists"),
        "{out:#?}"
    );
    assert!(!out.stdout.contains("resigned"), "{out:#?}");
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn demo_refuses_an_election_someone_stands_in() {
    let etcd = TestEtcd::start().await;
    let client = etcd.client().await;
    let mut a = Bin::spawn(ELECTION, &etcd.endpoint(), &["--id", "a", "--hold", "60"]);
    a.line_containing("leader a ", SHORT).await;
    let keys = standing(&client, 1).await;

    let out = assert_refused(
        ELECTION,
        &etcd.endpoint(),
        &[],
        &format!("/election/ already holds 1 candidate key(s) ({})", keys[0]),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert_eq!(standing(&client, 1).await, keys, "left untouched");
    let mut client = client;
    assert_eq!(lease_ids(&mut client).await.len(), 1, "nothing granted");

    a.signal(Signal::SIGINT);
    assert!(a.finish(SHORT).await.status.success());
}

#[tokio::test]
async fn bad_input_is_refused_without_touching_etcd() {
    let etcd = TestEtcd::start().await;
    for (args, why) in [
        (vec!["--hold", "5"], "--hold needs --id ID"),
        (vec!["--id", "a"], "--id needs --hold SECS"),
        (vec!["--name", "/e", "--hold", "5"], "--hold needs --id ID"),
        (
            vec!["--id", "a", "--hold", "5", "--ttl", "0"],
            "0 is not in 1..=86400",
        ),
        (vec!["--ttl", "-1"], "-1 is not in 1..=86400"),
        (vec!["--id", "a", "--hold", "0"], "more than 0"),
        (vec!["--id", "a", "--hold", "-1"], "must be more than 0"),
        (vec!["--id", "a", "--hold", "soon"], "not a number"),
        (vec!["--id", "", "--hold", "1"], "cannot be empty"),
        (vec!["--name", ""], "cannot be empty"),
        (
            vec!["--observe", "--id", "a", "--hold", "1"],
            "cannot be used with --id",
        ),
        (vec!["--observe", "--ttl", "3"], "cannot be used with --ttl"),
        (vec!["--observe", "--ttl=3"], "cannot be used with --ttl"),
        (vec!["--bogus"], "unexpected argument"),
    ] {
        let out = assert_refused(ELECTION, &etcd.endpoint(), &args, why).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:#?}");
        // ETCD_ENDPOINTS is set, as in a user's shell: the usage line must not show it as required.
        assert!(!out.stderr.contains("--endpoints <"), "{out:#?}");
    }
    let mut client = etcd.client().await;
    assert_eq!(lease_ids(&mut client).await.len(), 0, "nothing was granted");
    assert!(
        keys_under(&mut client, "").await.is_empty(),
        "nothing written"
    );
}

#[tokio::test]
async fn dead_endpoint_fails_fast_with_one_clear_line() {
    for args in [
        &["--id", "a", "--hold", "1"][..],
        &["--observe"][..],
        &[][..],
    ] {
        let out = assert_fails_fast_on_dead_endpoint(ELECTION, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:#?}");
    }
}

#[tokio::test]
async fn a_candidate_whose_key_was_deleted_while_its_lease_lives_campaigns_again() {
    // What etcd does after a freeze that broke the candidate's connection: the campaign it saw cancelled
    // resigns `/election/<lease>` when it ends on the server, after the campaign made again had already
    // found that key and waited with it. That campaign then returns once the leader resigns, for a key
    // that no longer exists. Here the test deletes the key itself, so that the order is always that one.
    let etcd = TestEtcd::start().await;
    let client = etcd.client().await;
    let mut a = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &["--id", "a", "--ttl", "30", "--hold", "60"],
    );
    a.line_containing("leader a ", SHORT).await;
    a.wait_until_catching(Signal::SIGINT, SHORT).await;
    let mut b = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &["--id", "b", "--ttl", "30", "--hold", "0.3"],
    );
    let campaigns = b.line_containing("b campaigns for", SHORT).await;
    let lease = lease_in(&campaigns);
    let key_b = format!("/election/{lease:x}");
    standing(&client, 2).await;
    let mut client = client;
    test_etcd::delete(&mut client, &key_b).await;

    a.signal(Signal::SIGINT);
    let a = a.finish(LIMIT).await;
    assert!(a.status.success(), "{a:#?}");
    b.line_containing(
        &format!(
            "our key {key_b} was deleted while we waited, although lease {lease:016x} is alive"
        ),
        SHORT,
    )
    .await;
    let b = b.finish(LIMIT).await;
    assert!(b.status.success(), "{b:#?}");
    assert!(!b.stderr.contains("nobody leads"), "{b:#?}");
    let (first, second) = (term_of(&a), term_of(&b));
    assert_eq!(second.id, "b");
    assert!(first.until <= second.from);
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

#[tokio::test]
async fn a_leader_whose_key_is_deleted_while_its_lease_lives_stops_leading() {
    // Its lease lives, but its key is gone: `etcdctl del`, or etcd ending late a campaign of this
    // candidate's that a broken connection cancelled. Another candidate may be elected at once, so the
    // leader must stop rather than lead on for its whole --hold.
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut a = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &["--id", "a", "--ttl", "30", "--hold", "60"],
    );
    let campaigns = a.line_containing("a campaigns for", SHORT).await;
    a.line_containing("leader a ", SHORT).await;
    let key = format!("/election/{:x}", lease_in(&campaigns));

    let deleted_at = test_etcd::delete(&mut client, &key).await;
    let out = a.finish(SHORT).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains(&format!(
            "etcd deleted our key {key} at revision {deleted_at}, although lease {:016x} is alive",
            lease_in(&campaigns)
        )) && out.stderr.contains("it is no longer leader"),
        "{out:#?}"
    );
    assert!(!out.stdout.contains("resigned"), "{out:#?}");
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0, "revoked");
}
