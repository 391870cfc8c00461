//! The real `discovery` binary, end to end, against a throwaway etcd: `register` processes and a `watch`.

use std::time::{Duration, Instant};

use test_etcd::{
    assert_ctrl_c_while_connecting_stops_at_once, assert_fails_fast_on_dead_endpoint,
    assert_refused, get_value, keys_under, lease_ids, lease_of, put, Bin, Output, Signal, TestEtcd,
};

const DISCOVERY: &str = env!("CARGO_BIN_EXE_discovery");
const LIMIT: Duration = Duration::from_secs(10);

/// `discovery register --service api --id <id> --addr 127.0.0.1:<port> --ttl <ttl>`, waited for until it
/// says it is registered.
async fn register(etcd: &TestEtcd, id: &str, port: u16, ttl: u64) -> Bin {
    let addr = format!("127.0.0.1:{port}");
    let ttl = ttl.to_string();
    let args = [
        "register",
        "--service",
        "api",
        "--id",
        id,
        "--addr",
        &addr,
        "--ttl",
        &ttl,
    ];
    let mut bin = Bin::spawn(DISCOVERY, &etcd.endpoint(), &args);
    bin.line_containing("2. registered api/", LIMIT).await;
    bin.line_containing("3. keeping", LIMIT).await;
    bin
}

/// `discovery watch --service api`, waited for until its watch is open.
async fn watcher(etcd: &TestEtcd, extra: &[&str]) -> Bin {
    let args: Vec<&str> = ["watch", "--service", "api"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let mut bin = Bin::spawn(DISCOVERY, &etcd.endpoint(), &args);
    bin.line_containing("2. watching /services/api/", LIMIT)
        .await;
    bin
}

/// Waits until a watcher whose etcd was killed says so and resumes. A killed etcd answers nothing: the
/// line says the connection broke, never "etcd answered".
async fn reconnects(watch: &mut Bin) {
    let lost = watch
        .line_containing("lost the connection to etcd", LIMIT)
        .await;
    assert!(
        lost.starts_with("lost the connection to etcd (the HTTP/2 connection broke: ")
            && !lost.contains("etcd answered"),
        "{lost}"
    );
    watch
        .line_containing("reconnected: resumed from revision", LIMIT)
        .await;
}

/// The `instances of api: [...]` lines a watcher printed, in order.
fn states(out: &Output) -> Vec<&str> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("instances of api: "))
        .map(|l| l.trim_start_matches("instances of api: "))
        .collect()
}

#[tokio::test]
async fn two_registered_instances_both_appear() {
    let etcd = TestEtcd::start().await;
    let mut watch = watcher(&etcd, &[]).await;
    let _a = register(&etcd, "a", 8001, 5).await;
    let _b = register(&etcd, "b", 8002, 5).await;
    watch
        .line_containing(
            "instances of api: [a=127.0.0.1:8001, b=127.0.0.1:8002]",
            LIMIT,
        )
        .await;

    // In etcd: both keys, each on a lease of its own.
    let mut client = etcd.client().await;
    assert_eq!(
        keys_under(&mut client, "/services/api/").await,
        ["/services/api/a", "/services/api/b"]
    );
    let lease_a = lease_of(&mut client, "/services/api/a").await.unwrap();
    let lease_b = lease_of(&mut client, "/services/api/b").await.unwrap();
    assert!(
        lease_a != 0 && lease_b != 0 && lease_a != lease_b,
        "{lease_a:x} {lease_b:x}"
    );
    assert_eq!(
        get_value(&mut client, "/services/api/a").await.as_deref(),
        Some("127.0.0.1:8001")
    );
}

#[tokio::test]
async fn sigint_on_one_removes_it_at_once() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut watch = watcher(&etcd, &[]).await;
    let a = register(&etcd, "a", 8001, 5).await;
    let _b = register(&etcd, "b", 8002, 5).await;
    watch
        .line_containing(
            "instances of api: [a=127.0.0.1:8001, b=127.0.0.1:8002]",
            LIMIT,
        )
        .await;

    let sent = Instant::now();
    a.signal(Signal::SIGINT);
    let out = a.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout
            .contains("Ctrl-C: deregistered api/a: revoked lease")
            && out
                .stdout
                .contains("so etcd deleted /services/api/a at once"),
        "{}",
        out.stdout
    );
    // Gone as soon as the process has exited: its lease was revoked, not left to expire.
    assert_eq!(get_value(&mut client, "/services/api/a").await, None);
    assert_eq!(
        keys_under(&mut client, "/services/api/").await,
        ["/services/api/b"]
    );
    watch
        .line_containing("instances of api: [b=127.0.0.1:8002]", LIMIT)
        .await;
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}, with a TTL of 5s"
    );
}

#[tokio::test]
async fn sigkill_on_the_other_removes_it_within_ttl_plus_2s() {
    let ttl = 2;
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut watch = watcher(&etcd, &[]).await;
    let _a = register(&etcd, "a", 8001, ttl).await;
    let b = register(&etcd, "b", 8002, ttl).await;
    watch
        .line_containing(
            "instances of api: [a=127.0.0.1:8001, b=127.0.0.1:8002]",
            LIMIT,
        )
        .await;

    // A crash: no chance to deregister. The entry stays until the lease's TTL runs out.
    b.signal(Signal::SIGKILL);
    let killed = Instant::now();
    drop(b);
    assert!(
        get_value(&mut client, "/services/api/b").await.is_some(),
        "the entry of a killed instance stays until its TTL runs out"
    );
    watch
        .line_containing(
            "instances of api: [a=127.0.0.1:8001]",
            Duration::from_secs(ttl + 3),
        )
        .await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(ttl + 2),
        "took {took:?} with a TTL of {ttl}s"
    );
    assert_eq!(
        keys_under(&mut client, "/services/api/").await,
        ["/services/api/a"]
    );
}

#[tokio::test]
async fn the_watcher_prints_each_state() {
    let etcd = TestEtcd::start().await;
    let mut watch = watcher(&etcd, &[]).await;
    let a = register(&etcd, "a", 8001, 5).await;
    watch.line_containing("instances of api: [a=", LIMIT).await;
    let b = register(&etcd, "b", 8002, 5).await;
    watch.line_containing("instances of api: [a=", LIMIT).await;
    a.signal(Signal::SIGINT);
    assert!(a.finish(LIMIT).await.status.success());
    watch.line_containing("instances of api: [b=", LIMIT).await;
    b.signal(Signal::SIGTERM);
    let out_b = b.finish(LIMIT).await;
    assert!(out_b.status.success(), "{out_b:#?}");
    assert!(
        out_b.stdout.contains("SIGTERM: deregistered api/b"),
        "{}",
        out_b.stdout
    );
    watch.line_containing("instances of api: []", LIMIT).await;

    watch.signal(Signal::SIGINT);
    let out = watch.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(
        states(&out),
        [
            "[]",
            "[a=127.0.0.1:8001]",
            "[a=127.0.0.1:8001, b=127.0.0.1:8002]",
            "[b=127.0.0.1:8002]",
            "[]"
        ],
        "each state once, in order:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("canceled on the server"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn the_watcher_started_under_a_writer_ends_with_every_instance() {
    // Instances keep registering while the watcher starts, so some land between its read and its watch.
    // They only ever join, so a change missed there would leave one out of the last line for good.
    let etcd = TestEtcd::start().await;
    let client = etcd.client().await;
    let count = 60;
    let writer = tokio::spawn(async move {
        let mut client = client;
        for i in 0..count {
            put(
                &mut client,
                &format!("/services/api/i{i:02}"),
                "127.0.0.1:9000",
            )
            .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut watch = Bin::spawn(DISCOVERY, &etcd.endpoint(), &["watch", "--service", "api"]);
    writer.await.unwrap();
    let every: Vec<String> = (0..count)
        .map(|i| format!("i{i:02}=127.0.0.1:9000"))
        .collect();
    let last = format!("instances of api: [{}]", every.join(", "));
    watch.line_containing(&last, LIMIT).await;
}

#[tokio::test]
async fn the_watcher_survives_an_etcd_restart() {
    let mut etcd = TestEtcd::start().await;
    let mut watch = watcher(&etcd, &["--dial-timeout", "2"]).await;
    let mut a = register(&etcd, "a", 8001, 5).await;
    watch
        .line_containing("instances of api: [a=127.0.0.1:8001]", LIMIT)
        .await;

    // SIGKILL and start again on the same ports and data, within a's TTL, then register b at once: the
    // watcher is most likely still reconnecting, so b must come from the resumed watch's history.
    etcd.restart().await;
    let mut client = etcd.client().await;
    put(&mut client, "/services/api/b", "127.0.0.1:8002").await;
    reconnects(&mut watch).await;
    watch
        .line_containing(
            "instances of api: [a=127.0.0.1:8001, b=127.0.0.1:8002]",
            LIMIT,
        )
        .await;
    // The registered instance rode out the restart: its keep-alive stream re-opened within the TTL. It
    // broke with the connection, and the lease was fine: the line says so, not that the lease is gone.
    let broke = a.line_containing("keep-alive stream broke", LIMIT).await;
    assert!(
        !broke.contains("gone") && broke.contains("connection to etcd"),
        "{broke}"
    );
    a.line_containing("keep-alive stream re-opened", LIMIT)
        .await;
    a.signal(Signal::SIGINT);
    assert!(a.finish(LIMIT).await.status.success());
    watch
        .line_containing("instances of api: [b=127.0.0.1:8002]", LIMIT)
        .await;

    watch.signal(Signal::SIGINT);
    let out = watch.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(
        states(&out),
        [
            "[]",
            "[a=127.0.0.1:8001]",
            "[a=127.0.0.1:8001, b=127.0.0.1:8002]",
            "[b=127.0.0.1:8002]"
        ],
        "each state once, a never dropped by the restart:\n{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_second_instance_with_the_same_id_is_refused_and_told_who_holds_it() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let _a = register(&etcd, "a", 8001, 5).await;
    let held_on = lease_of(&mut client, "/services/api/a").await.unwrap();

    let args = [
        "register",
        "--service",
        "api",
        "--id",
        "a",
        "--addr",
        "127.0.0.1:8009",
    ];
    let out = assert_refused(DISCOVERY, &etcd.endpoint(), &args, "already registered").await;
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(
        out.stderr.contains("/services/api/a = 127.0.0.1:8001")
            && out.stderr.contains(&format!("{held_on:016x}")),
        "names the holder and its lease: {}",
        out.stderr
    );
    // The first registration is untouched, and the refused one left no lease behind.
    assert_eq!(
        get_value(&mut client, "/services/api/a").await.as_deref(),
        Some("127.0.0.1:8001")
    );
    assert_eq!(
        lease_of(&mut client, "/services/api/a").await,
        Some(held_on)
    );
    assert_eq!(lease_ids(&mut client).await, [held_on]);
}

#[tokio::test]
async fn the_demo_refuses_a_prefix_that_holds_keys_and_leaves_them() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    put(&mut client, "/services/demo/mine", "127.0.0.1:7000").await;
    let out = assert_refused(DISCOVERY, &etcd.endpoint(), &[], "/services/demo/mine").await;
    assert!(out.stderr.contains("did not write"), "{}", out.stderr);
    assert_eq!(
        get_value(&mut client, "/services/demo/mine")
            .await
            .as_deref(),
        Some("127.0.0.1:7000")
    );
    assert!(lease_ids(&mut client).await.is_empty());
}

#[tokio::test]
async fn dead_endpoint_fails_fast_with_one_clear_line() {
    assert_fails_fast_on_dead_endpoint(DISCOVERY, &[]).await;
    assert_fails_fast_on_dead_endpoint(DISCOVERY, &["watch", "--service", "api"]).await;
    let register = [
        "register",
        "--service",
        "api",
        "--id",
        "a",
        "--addr",
        "127.0.0.1:8001",
    ];
    assert_fails_fast_on_dead_endpoint(DISCOVERY, &register).await;
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_written() {
    let etcd = TestEtcd::start().await;
    let ok = ["--service", "api", "--id", "a", "--addr", "127.0.0.1:8001"];
    let with = |flag: &'static str, value: &'static str| -> Vec<&'static str> {
        let mut args = vec!["register"];
        let mut rest = ok.to_vec();
        match rest.iter().position(|a| *a == flag) {
            Some(at) => rest[at + 1] = value,
            None => rest.extend([flag, value]),
        }
        args.extend(rest);
        args
    };
    for (args, why) in [
        (
            with("--addr", "nonsense"),
            "is not an address: expected host:port",
        ),
        (with("--addr", "127.0.0.1:0"), "no valid port"),
        (with("--addr", "127.0.0.1:65536"), "no valid port"),
        (with("--ttl", "0"), "0 is not in 1..=9000000000"),
        (with("--ttl", "-5"), "-5 is not in 1..=9000000000"),
        (
            with("--service", ""),
            "'--service <S>': a name cannot be empty",
        ),
        (with("--id", ""), "'--id <ID>': a name cannot be empty"),
        (with("--id", "a/b"), "contains '/'"),
        (with("--id", "a\nb"), "contains '\\n'"),
        (vec!["watch", "--service", ""], "a name cannot be empty"),
    ] {
        let out = assert_refused(DISCOVERY, &etcd.endpoint(), &args, why).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:#?}");
    }
    let mut client = etcd.client().await;
    assert!(
        keys_under(&mut client, "/").await.is_empty(),
        "nothing written"
    );
    assert!(lease_ids(&mut client).await.is_empty(), "no lease granted");
}

#[tokio::test]
async fn deregistering_against_a_frozen_etcd_is_bounded_by_the_dial_timeout() {
    let etcd = TestEtcd::start().await;
    let args = [
        "register",
        "--service",
        "api",
        "--id",
        "a",
        "--addr",
        "127.0.0.1:8001",
        "--ttl",
        "10",
        "--dial-timeout",
        "1",
    ];
    let mut bin = Bin::spawn(DISCOVERY, &etcd.endpoint(), &args);
    bin.line_containing("3. keeping", LIMIT).await;
    etcd.freeze();
    let sent = Instant::now();
    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;
    let took = sent.elapsed();
    etcd.thaw();
    assert!(took < Duration::from_secs(1 + 2), "took {took:?}");
    test_etcd::assert_clean_failure(&out);
    assert!(
        out.stderr.contains("etcd did not answer within 1s")
            && out.stderr.contains("goes when its TTL of 10s runs out"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn ctrl_c_while_connecting_stops_at_once() {
    let etcd = TestEtcd::start().await;
    let args = [
        "register",
        "--service",
        "api",
        "--id",
        "a",
        "--addr",
        "127.0.0.1:8001",
    ];
    assert_ctrl_c_while_connecting_stops_at_once(
        &etcd,
        DISCOVERY,
        &args,
        "stopped before connecting",
    )
    .await;
    let mut client = etcd.client().await;
    assert!(keys_under(&mut client, "/services/").await.is_empty());
}

/// Puts 60 instances with 100 kB values under /services/api/ (`i00` to `i59`): 6 MB in all, more than
/// etcd-client's default 4 MiB reply limit, each put well under etcd's 1.5 MiB request limit.
async fn put_six_megabytes(etcd: &TestEtcd) {
    let mut client = etcd.client().await;
    let value = "x".repeat(100_000);
    for i in 0..60 {
        put(&mut client, &format!("/services/api/i{i:02}"), &value).await;
    }
}

/// Asserts that a watcher's line lists all 60 instances of [`put_six_megabytes`].
fn lists_all_sixty(line: &str) {
    let ids = (0..60)
        .filter(|i| line.contains(&format!("i{i:02}=x")))
        .count();
    assert_eq!(ids, 60, "the line lists all 60 instances");
}

#[tokio::test]
async fn the_watcher_reads_more_than_4_mib_of_instances() {
    let etcd = TestEtcd::start().await;
    put_six_megabytes(&etcd).await;

    // The first GET's reply is 6 MB: with etcd-client's default limit it fails to decode, every time.
    let mut watch = Bin::spawn(DISCOVERY, &etcd.endpoint(), &["watch", "--service", "api"]);
    watch
        .line_containing("1. read /services/api/ at revision", LIMIT)
        .await;
    lists_all_sixty(&watch.line_containing("instances of api: [", LIMIT).await);
    watch
        .line_containing("2. watching /services/api/", LIMIT)
        .await;
    watch.signal(Signal::SIGINT);
    let out = watch.finish(LIMIT).await;
    assert!(out.status.success(), "exit 0: {}", out.stderr);
}

#[tokio::test]
async fn the_watcher_resumes_with_a_replay_of_more_than_4_mib() {
    let mut etcd = TestEtcd::start().await;
    let mut watch = watcher(&etcd, &["--dial-timeout", "2"]).await;

    // The watcher is frozen (SIGSTOP) while etcd restarts and 6 MB of instances are written, so when it
    // wakes its stream is broken and it resumes from the revision it had reached: etcd replays the 60
    // puts in one response, over etcd-client's default 4 MiB.
    watch.signal(Signal::SIGSTOP);
    etcd.restart().await;
    put_six_megabytes(&etcd).await;
    watch.signal(Signal::SIGCONT);

    reconnects(&mut watch).await;
    lists_all_sixty(&watch.line_containing("instances of api: [", LIMIT).await);
    watch.signal(Signal::SIGINT);
    let out = watch.finish(LIMIT).await;
    assert!(out.status.success(), "exit 0: {}", out.stderr);
}
