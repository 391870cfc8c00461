//! The real `election` binary against an etcd that is frozen (SIGSTOP), restarted (SIGKILL and back on the
//! same data), or dead in the endpoint list.

use std::time::{Duration, Instant};

use etcd_client::ResignOptions;
use test_etcd::{
    assert_clean_failure, assert_ctrl_c_while_connecting_stops_at_once, keys_under, lease_ids, Bin,
    Output, Signal, TestEtcd,
};

const ELECTION: &str = env!("CARGO_BIN_EXE_election");
const LIMIT: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_secs(10);

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

fn line_of<'a>(out: &'a Output, start: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no {start:?} line: {out:#?}"))
}

#[tokio::test]
async fn ctrl_c_while_connecting_stops_at_once() {
    let etcd = TestEtcd::start().await;
    assert_ctrl_c_while_connecting_stops_at_once(
        &etcd,
        ELECTION,
        &["--id", "a", "--hold", "5"],
        "Ctrl-C: stopped before connecting",
    )
    .await;
    let mut client = etcd.client().await;
    assert!(
        lease_ids(&mut client).await.is_empty(),
        "no session started"
    );
    assert!(keys_under(&mut client, "/election/").await.is_empty());
}

/// The leader keeps leading across a crash and restart of etcd (its session re-opens the keep-alive
/// stream), and the candidate waiting behind it campaigns again with the same lease and keeps its place:
/// it is elected with the create revision it had before the restart.
#[tokio::test]
async fn leader_and_waiter_survive_a_short_etcd_restart() {
    let mut etcd = TestEtcd::start().await;
    let mut a = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &["--id", "a", "--ttl", "5", "--hold", "7"],
    );
    a.line_containing("leader a ", SHORT).await;
    let mut b = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &["--id", "b", "--ttl", "5", "--hold", "0.3"],
    );
    b.line_containing("b campaigns for", SHORT).await;
    let client = etcd.client().await;
    let queued_at = test_etcd::eventually("b queued", SHORT, || {
        let mut client = client.clone();
        async move {
            let resp = client
                .get(
                    "/election/",
                    Some(etcd_client::GetOptions::new().with_prefix()),
                )
                .await
                .unwrap();
            (resp.kvs().len() == 2).then(|| {
                resp.kvs()
                    .iter()
                    .find(|kv| kv.value() == b"b")
                    .expect("b's key")
                    .create_revision()
            })
        }
    })
    .await;

    etcd.kill();
    etcd.restart().await;

    let a = a.finish(LIMIT).await;
    assert!(a.status.success(), "{a:#?}");
    let b = b.finish(LIMIT).await;
    assert!(b.status.success(), "{b:#?}");
    assert!(
        b.stdout
            .contains("lost the connection to etcd while campaigning"),
        "{b:#?}"
    );
    let (a_led, a_resigned) = (line_of(&a, "leader a "), line_of(&a, "resigned a "));
    let b_led = line_of(&b, "leader b ");
    let (from, until): (u128, u128) = (
        field(a_led, "at=").parse().unwrap(),
        field(a_resigned, "at=").parse().unwrap(),
    );
    assert!(until - from >= 7_000, "a led for its whole --hold: {a:#?}");
    assert!(
        until <= field(b_led, "at=").parse::<u128>().unwrap(),
        "no overlap"
    );
    assert_eq!(
        field(b_led, "rev="),
        queued_at.to_string(),
        "b kept its place (and its create revision) across the restart"
    );
    for out in [&a, &b] {
        assert!(
            !out.stderr.contains("WARN") && !out.stderr.contains("error"),
            "{out:#?}"
        );
    }
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert_eq!(lease_ids(&mut client).await.len(), 0);
}

/// The observer's stream breaks with the restart; it observes again with backoff, does not print the
/// leader it already printed, and prints the next change.
/// Longer than the client's HTTP/2 keep-alive (a ping 5 s after the last answer, 3 s for its reply), so a
/// freeze this long breaks the connection; far shorter than the sessions' 30 s TTL.
const FREEZE: Duration = Duration::from_secs(11);

/// The create revision of `key`, if it exists.
async fn create_revision(mut client: etcd_client::Client, key: String) -> Option<i64> {
    let got = client.get(key, None).await.ok()?;
    got.kvs().first().map(|kv| kv.create_revision())
}

#[tokio::test]
async fn waiting_candidates_survive_an_etcd_freeze_shorter_than_their_ttl() {
    // The issue that found it: after a 9 s freeze a waiting candidate exited 1 in 2 of 4 runs with "the
    // campaign ... returned, but nobody leads", although its lease was alive. etcd had resigned its key
    // when it ended the campaign that the broken connection cancelled, after the campaign made again had
    // found that key and waited with it. Which of the two etcd handles first after the thaw varies; two
    // waiting candidates make it likelier that one of them meets the bad order.
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut leader = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &["--id", "a", "--ttl", "30", "--hold", "60"],
    );
    let elected = leader.line_containing("leader a ", LIMIT).await;
    leader.wait_until_catching(Signal::SIGINT, LIMIT).await;
    let mut waiting = Vec::new();
    let mut first_keys = Vec::new();
    for (n, id) in [(1, "b"), (2, "c")] {
        let mut candidate = Bin::spawn(
            ELECTION,
            &etcd.endpoint(),
            &["--id", id, "--ttl", "30", "--hold", "0.3"],
        );
        candidate
            .line_containing(&format!("{id} campaigns for"), LIMIT)
            .await;
        let keys =
            test_etcd::eventually("the candidate stands", LIMIT, || {
                let mut client = client.clone();
                async move {
                    Some(keys_under(&mut client, "/election/").await).filter(|k| k.len() == n + 1)
                }
            })
            .await;
        let mut known = Vec::new();
        for key in &keys {
            let created = create_revision(client.clone(), key.clone()).await;
            if created != Some(field(&elected, "rev=").parse().unwrap())
                && !first_keys.iter().any(|(k, _)| k == key)
            {
                known.push((key.clone(), created.expect("the key just listed")));
            }
        }
        first_keys.extend(known);
        waiting.push(candidate);
    }
    assert_eq!(first_keys.len(), 2, "{first_keys:?}");

    // The fault: etcd frozen for FREEZE. The waiting campaigns break with the connection meanwhile, and
    // the campaigns made again wait on new connections for etcd to wake up, next to the broken ones.
    let frozen = tokio::time::Instant::now();
    etcd.freeze();
    for candidate in &mut waiting {
        candidate
            .line_containing("lost the connection to etcd while campaigning", FREEZE)
            .await;
    }
    tokio::time::sleep_until(frozen + FREEZE).await;
    etcd.thaw();
    // Once awake, etcd ends the campaigns the broken connections cancelled, and resigns the keys they
    // stood with. The leader resigns only after that, as the leader did (it led for 15 s).
    for (key, created) in &first_keys {
        test_etcd::eventually("etcd deleted a candidate's first key", LIMIT, || {
            let (client, key) = (client.clone(), key.clone());
            async move { (create_revision(client, key).await != Some(*created)).then_some(()) }
        })
        .await;
    }

    leader.signal(Signal::SIGINT);
    let mut outs = vec![leader.finish(LIMIT).await];
    for candidate in waiting {
        outs.push(candidate.finish(LIMIT).await);
    }
    let mut terms = Vec::new();
    for out in &outs {
        assert!(out.status.success(), "{outs:#?}");
        assert!(!out.stderr.contains("error"), "{outs:#?}");
        let from = field(line_of(out, "leader "), "at=")
            .parse::<u128>()
            .unwrap();
        let until = field(line_of(out, "resigned "), "at=")
            .parse::<u128>()
            .unwrap();
        terms.push((from, until));
    }
    terms.sort();
    assert!(
        terms.windows(2).all(|t| t[0].1 <= t[1].0),
        "no overlap: {terms:?} {outs:#?}"
    );
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert!(lease_ids(&mut client).await.is_empty());
}

#[tokio::test]
async fn a_leader_whose_resign_breaks_in_a_freeze_asks_again_and_resigns() {
    // As with the lock topic's unlock: a resign sent while etcd was frozen failed when the connection
    // broke; the leader then revoked its lease (which ended its leadership) and still said that the next
    // candidate "is elected when lease ... expires".
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut leader = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &[
            "--id",
            "a",
            "--ttl",
            "30",
            "--hold",
            "1",
            "--dial-timeout",
            "30",
        ],
    );
    leader.line_containing("leader a ", LIMIT).await;
    // The term ends while etcd is frozen, so the resign waits on a connection that breaks.
    etcd.freeze();
    tokio::time::sleep(FREEZE).await;
    etcd.thaw();

    let out = leader.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stdout.contains("resigned a at="), "{out:#?}");
    assert!(!out.stderr.contains("is elected when"), "{out:#?}");
    assert!(keys_under(&mut client, "/election/").await.is_empty());
    assert!(lease_ids(&mut client).await.is_empty());
}

#[tokio::test]
async fn the_observer_survives_an_etcd_restart_and_prints_each_change_once() {
    let mut etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut observer = Bin::spawn(ELECTION, &etcd.endpoint(), &["--observe"]);
    observer.line_containing("observing /election", SHORT).await;

    let one = client.lease_grant(30, None).await.unwrap().id();
    let won = client.campaign("/election", "x", one).await.unwrap();
    observer
        .line_containing("leader of /election is now x ", SHORT)
        .await;

    etcd.kill();
    etcd.restart().await;
    observer
        .line_containing("lost the observe stream", SHORT)
        .await;

    let mut client = etcd.client().await;
    client
        .resign(Some(
            ResignOptions::new().with_leader(won.leader().unwrap().clone()),
        ))
        .await
        .unwrap();
    let two = client.lease_grant(30, None).await.unwrap().id();
    client.campaign("/election", "y", two).await.unwrap();
    observer
        .line_containing("leader of /election is now y ", SHORT)
        .await;

    observer.signal(Signal::SIGINT);
    let out = observer.finish(SHORT).await;
    assert!(out.status.success(), "{out:#?}");
    let changes: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("leader of"))
        .collect();
    assert_eq!(changes.len(), 2, "x once, then y: {out:#?}");
    assert_eq!(
        out.stdout.matches("lost the observe stream").count(),
        1,
        "one line per outage: {out:#?}"
    );
    for lease in [one, two] {
        client.lease_revoke(lease).await.unwrap();
    }
}

#[tokio::test]
async fn resign_against_a_frozen_etcd_is_bounded_by_the_dial_timeout() {
    let etcd = TestEtcd::start().await;
    let dial_timeout = Duration::from_secs(2);
    let mut a = Bin::spawn(
        ELECTION,
        &etcd.endpoint(),
        &[
            "--dial-timeout",
            "2",
            "--id",
            "a",
            "--ttl",
            "5",
            "--hold",
            "60",
        ],
    );
    a.line_containing("leader a ", SHORT).await;

    etcd.freeze();
    a.signal(Signal::SIGINT);
    let signalled = Instant::now();
    let out = a.finish(LIMIT).await;
    let took = signalled.elapsed();
    etcd.thaw();

    assert!(
        took < dial_timeout + Duration::from_secs(2),
        "took {took:?}: {out:#?}"
    );
    assert_clean_failure(&out);
    assert!(out.stdout.contains("Ctrl-C: resigning early"), "{out:#?}");
    assert!(
        out.stderr
            .contains("resign from /election: etcd did not answer within 2s (--dial-timeout)")
            && out
                .stderr
                .contains("the next candidate is elected when lease"),
        "{out:#?}"
    );
    assert!(!out.stdout.contains("resigned"), "{out:#?}");
}

#[tokio::test]
async fn the_demo_works_with_a_dead_member_in_the_endpoint_list() {
    let etcd = TestEtcd::start().await;
    let dead = format!("127.0.0.1:{}", test_etcd::free_port());
    let endpoints = format!("{dead},{}", etcd.endpoint());
    let out = Bin::run(ELECTION, &endpoints, &[], LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stdout.contains("6. candidate b won"), "{out:#?}");
    assert!(
        out.stderr
            .contains(&format!("note: etcd member {dead} does not answer")),
        "{out:#?}"
    );
    let mut client = etcd.client().await;
    assert!(lease_ids(&mut client).await.is_empty(), "{out:#?}");
    assert!(keys_under(&mut client, "/election/").await.is_empty());
}
