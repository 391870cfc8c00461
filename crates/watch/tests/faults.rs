//! The `watch` binary under the faults real services meet: a reply bigger than the client's default
//! limit, Ctrl-C while etcd is frozen, etcd restarted under a steady writer, etcd down for a while, a dead
//! member in the endpoint list, a value that is not UTF-8. Every scenario runs against real etcd
//! processes; each test's name is the scenario docs/faults.md lists.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, WatchOptions};
use test_etcd::{
    assert_clean_failure, assert_ctrl_c_while_connecting_stops_at_once, eventually, free_port, put,
    Bin, Output, Signal, TestEtcd,
};

const WATCH: &str = env!("CARGO_BIN_EXE_watch");
const LIMIT: Duration = Duration::from_secs(15);

/// The printed lines that report a change, in order.
fn change_lines(out: &Output) -> Vec<&str> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("PUT ") || l.starts_with("DELETE "))
        .collect()
}

/// The revision at the end of a change line: `PUT /w/3 = 17 (revision 42)` gives 42.
fn revision_of(line: &str) -> i64 {
    line.rsplit_once("(revision ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no revision at the end of {line:?}"))
}

#[tokio::test]
async fn a_big_history_replays_without_looping() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    // Five 1 MB values: each fits etcd's 1.5 MiB request limit, but their replay comes as one ~5 MB
    // response, over etcd-client's 4 MiB default.
    let big = "x".repeat(1_000_000);
    let mut expected = Vec::new();
    for i in 0..5 {
        let key = format!("/big/{i}");
        let rev = put(&mut client, &key, &big).await;
        expected.push(format!("PUT {key} = {big} (revision {rev})"));
    }
    let first = revision_of(&expected[0]).to_string();

    let out = Bin::run(
        WATCH,
        &etcd.endpoint(),
        &[
            "--key", "/big/", "--prefix", "--rev", &first, "--count", "5",
        ],
        LIMIT,
    )
    .await;

    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        out.stderr
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert!(
        !out.stdout.contains("lost the connection"),
        "it reconnected instead of reading the replay"
    );
    assert!(
        change_lines(&out) == expected,
        "the 5 PUTs, in order, each once (lines are 1 MB: not printed)"
    );
}

#[tokio::test]
async fn a_reply_too_big_even_for_the_raised_limit_ends_with_one_clear_line() {
    // A member that takes 10 MiB requests, so that 7 writes make a replay over the watcher's 64 MiB.
    let etcd = TestEtcd::start_with(&["--max-request-bytes=10485760"]).await;
    let mut client = etcd.client().await;
    let huge = "x".repeat(10_000_000);
    let mut first = None;
    for i in 0..7 {
        let rev = put(&mut client, &format!("/huge/{i}"), &huge).await;
        first.get_or_insert(rev);
    }
    let first = first.expect("written").to_string();

    let started = Instant::now();
    let out = Bin::run(
        WATCH,
        &etcd.endpoint(),
        &["--key", "/huge/", "--prefix", "--rev", &first],
        Duration::from_secs(30),
    )
    .await;
    let took = started.elapsed();

    assert_clean_failure(&out);
    let error = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap();
    assert!(
        error.contains("over the 64 MiB this watcher accepts")
            && error.contains("watch from a later revision"),
        "{error}"
    );
    assert!(
        !out.stdout.contains("reconnecting"),
        "retrying cannot help, so it must not retry: {}",
        out.stdout
    );
    assert!(change_lines(&out).is_empty(), "{}", out.stdout);
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[tokio::test]
async fn ctrl_c_while_connecting_stops_at_once() {
    let etcd = TestEtcd::start().await;
    let out = assert_ctrl_c_while_connecting_stops_at_once(
        &etcd,
        WATCH,
        &[],
        "stopped (Ctrl-C) while connecting",
    )
    .await;
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "stopped (Ctrl-C) while connecting; nothing was watched"),
        "{out:#?}"
    );
}

#[tokio::test]
async fn watch_across_a_restart_under_a_continuous_writer_prints_every_revision_once() {
    const PUTS: usize = 300;
    let mut etcd = TestEtcd::start().await;
    let mut bin = Bin::spawn(
        WATCH,
        &etcd.endpoint(),
        &["--key", "/w/", "--prefix", "--dial-timeout", "2"],
    );
    let watching = bin
        .line_containing("watching every key under /w/ from revision ", LIMIT)
        .await;
    let from: i64 = watching
        .split_whitespace()
        .nth(7)
        .and_then(|n| n.trim_end_matches(';').parse().ok())
        .unwrap_or_else(|| panic!("no revision in {watching:?}"));

    // The writer: PUTS puts under /w/, each bounded, retried after a short pause when etcd is away.
    let written = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (written, failed) = (written.clone(), failed.clone());
        let endpoint = etcd.endpoint();
        tokio::spawn(async move {
            let mut client = Client::connect([endpoint], None)
                .await
                .expect("connect is lazy");
            let mut acknowledged = Vec::new();
            for i in 0..PUTS {
                loop {
                    let put = client.put(format!("/w/{}", i % 10), i.to_string(), None);
                    match tokio::time::timeout(Duration::from_secs(2), put).await {
                        Ok(Ok(reply)) => {
                            acknowledged.push(reply.header().expect("a header").revision());
                            written.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            acknowledged
        })
    };

    // Twice, in the middle of the writes: SIGKILL etcd, let the writer see it gone, start it again.
    for round in 1..=2 {
        let (w, f) = (written.clone(), failed.clone());
        eventually("the writer makes progress", Duration::from_secs(60), || {
            let w = w.clone();
            async move { (w.load(Ordering::SeqCst) >= round * PUTS / 3).then_some(()) }
        })
        .await;
        etcd.kill();
        let failures = f.load(Ordering::SeqCst);
        eventually("the writer meets the dead etcd", LIMIT, || {
            let f = f.clone();
            async move { (f.load(Ordering::SeqCst) > failures).then_some(()) }
        })
        .await;
        etcd.restart().await;
    }
    let acknowledged = tokio::time::timeout(Duration::from_secs(90), writer)
        .await
        .expect("the writer finishes")
        .expect("the writer does not panic");
    assert_eq!(acknowledged.len(), PUTS);

    // What etcd's history holds under /w/ since the watch started, read back with a watch of our own: a
    // put may have committed although its reply was lost in the kill, so the writer's record alone is
    // not the truth.
    let mut client = etcd.client().await;
    let last = client
        .get("/w/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .expect("a get works")
        .header()
        .expect("a header")
        .revision();
    let mut history = Vec::new();
    let mut stream = client
        .watch(
            "/w/",
            Some(WatchOptions::new().with_prefix().with_start_revision(from)),
        )
        .await
        .expect("a watch opens");
    while history.last() != Some(&last) {
        let response = tokio::time::timeout(LIMIT, stream.message())
            .await
            .expect("the history arrives")
            .expect("the stream works")
            .expect("the stream stays open");
        for event in response.events() {
            assert_eq!(event.event_type(), EventType::Put);
            history.push(event.kv().expect("a key-value").mod_revision());
        }
    }
    for rev in &acknowledged {
        assert!(
            history.contains(rev),
            "acknowledged {rev} is not in etcd's history"
        );
    }

    bin.line_containing(&format!("(revision {last})"), Duration::from_secs(30))
        .await;
    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout
            .matches("reconnected: resumed from revision")
            .count()
            >= 1,
        "the restarts were seen: {}",
        out.stdout
    );
    let printed: Vec<i64> = change_lines(&out).into_iter().map(revision_of).collect();
    assert_eq!(
        printed.len(),
        history.len(),
        "every committed revision once, no more, no less"
    );
    assert_eq!(printed, history, "every committed revision once, in order");
}

/// CPU time (user + system) the process has used, in clock ticks, from /proc/<pid>/stat.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14 and stime 15.
    let after = &stat[stat.rfind(')').expect("a comm field") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields[i - 3].parse::<u64>().expect("a number of ticks");
    ticks(14) + ticks(15)
}

#[tokio::test]
async fn no_busy_loop_while_etcd_is_down() {
    // Linux counts CPU time in ticks of 1/100 s (CLK_TCK; `getconf CLK_TCK` says 100 on every common
    // Linux system). Assumed here rather than asked through libc.
    const TICKS_PER_SECOND: f64 = 100.0;
    let mut etcd = TestEtcd::start().await;
    let mut bin = Bin::spawn(WATCH, &etcd.endpoint(), &["--dial-timeout", "1"]);
    bin.line_containing("watching", LIMIT).await;
    etcd.kill();
    bin.line_containing("lost the connection", LIMIT).await;

    let pid = bin.pid();
    let (before, started) = (cpu_ticks(pid), Instant::now());
    // The measurement window: the watcher keeps retrying all along (etcd stays down).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = (cpu_ticks(pid) - before) as f64 / TICKS_PER_SECOND;
    let share = used / started.elapsed().as_secs_f64();
    bin.line_containing("etcd is not back yet", LIMIT).await;

    bin.signal(Signal::SIGTERM);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    // Generous, as the machine is shared: a busy loop would use close to 100%.
    assert!(
        share < 0.10,
        "{:.1}% CPU while etcd was down",
        share * 100.0
    );
}

#[tokio::test]
async fn watch_works_with_a_dead_member_in_the_endpoint_list() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let dead = format!("127.0.0.1:{}", free_port());
    for endpoints in [
        format!("{dead},{}", etcd.endpoint()),
        format!("{},{dead}", etcd.endpoint()),
    ] {
        let mut bin = Bin::spawn(WATCH, &endpoints, &["--count", "2", "--dial-timeout", "2"]);
        bin.line_containing("watching name", LIMIT).await;
        let first = put(&mut client, "name", "one").await;
        let second = put(&mut client, "name", "two").await;
        let out = bin.finish(LIMIT).await;
        assert!(out.status.success(), "{endpoints}: {out:#?}");
        assert_eq!(
            change_lines(&out),
            [
                format!("PUT name = one (revision {first})"),
                format!("PUT name = two (revision {second})"),
            ],
            "{endpoints}"
        );
    }
}

#[tokio::test]
async fn a_non_utf8_value_is_printed_with_replacement_characters() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(WATCH, &etcd.endpoint(), &["--count", "1"]);
    bin.line_containing("watching name", LIMIT).await;
    let rev = client
        .put("name", vec![0x66, 0xff, 0xfe], None)
        .await
        .expect("a put works")
        .header()
        .expect("a header")
        .revision();
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(
        change_lines(&out),
        [format!("PUT name = f\u{fffd}\u{fffd} (revision {rev})")]
    );
}
