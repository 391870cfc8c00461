//! The real `kv` binary, end to end, against a throwaway etcd.

use std::time::Duration;

use test_etcd::{
    assert_clean_failure, assert_fails_fast_on_dead_endpoint, assert_refused, free_port, get_value,
    keys_under, put, Bin, TestEtcd,
};

const KV: &str = env!("CARGO_BIN_EXE_kv");
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn default_run_prints_every_step_and_leaves_name_in_place() {
    let etcd = TestEtcd::start().await;
    let out = Bin::run(KV, &etcd.endpoint(), &[], LIMIT).await;
    assert!(out.status.success(), "{out:#?}");

    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(&"   name : ferris"), "{}", out.stdout);
    for step in [
        "1. put name = ferris",
        "2. get name",
        "3. put /kv-demo/color",
        "4. get --prefix /kv-demo/",
        "5. ",
        "6. deleted the 3 keys this run created under /kv-demo/",
    ] {
        assert!(
            out.stdout.contains(step),
            "missing {step:?} in:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("prev_kv returned: red"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("was red, now it is blue"),
        "{}",
        out.stdout
    );

    let mut client = etcd.client().await;
    assert_eq!(
        get_value(&mut client, "name").await.as_deref(),
        Some("ferris")
    );
    let demo = client
        .get(
            "/kv-demo/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(demo.count(), 0, "the demo keys are deleted at the end");
}

#[tokio::test]
async fn key_and_value_flags_change_the_first_step() {
    let etcd = TestEtcd::start().await;
    let out = Bin::run(
        KV,
        &etcd.endpoint(),
        &["--key", "k1", "--value", "v1"],
        LIMIT,
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.lines().any(|l| l.contains("k1 : v1")),
        "{}",
        out.stdout
    );

    let mut client = etcd.client().await;
    assert_eq!(get_value(&mut client, "k1").await.as_deref(), Some("v1"));
    assert_eq!(
        get_value(&mut client, "name").await,
        None,
        "only --key is written"
    );
}

#[tokio::test]
async fn a_demo_prefix_that_holds_keys_is_refused_and_left_untouched() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    // As in the issue that found it: `--demo-prefix /` once deleted every key in the store.
    put(&mut client, "/mine/a", "1").await;
    put(&mut client, "users-key", "precious").await;
    for prefix in ["/", "/mine/"] {
        let out = assert_refused(
            KV,
            &etcd.endpoint(),
            &["--demo-prefix", prefix],
            "which this program did not write",
        )
        .await;
        assert!(out.stderr.contains("/mine/a"), "names the keys: {out:#?}");
    }
    assert_eq!(
        get_value(&mut client, "users-key").await.as_deref(),
        Some("precious")
    );
    assert_eq!(
        get_value(&mut client, "/mine/a").await.as_deref(),
        Some("1")
    );
    assert_eq!(
        keys_under(&mut client, "/mine/").await,
        ["/mine/a"],
        "no demo key was written next to them"
    );
}

#[tokio::test]
async fn a_refused_demo_prefix_is_checked_before_name_is_written() {
    // Issue 15: kv put `name` first and only then refused the non-empty /kv-demo/, so the user's `name`
    // was overwritten by a run that then failed.
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let written = put(&mut client, "name", "mine").await;
    put(&mut client, "/kv-demo/left", "1").await;
    assert_refused(
        KV,
        &etcd.endpoint(),
        &[],
        "which this program did not write",
    )
    .await;
    assert_eq!(
        get_value(&mut client, "name").await.as_deref(),
        Some("mine")
    );
    let now = client.get("name", None).await.expect("a get works");
    assert_eq!(now.kvs()[0].mod_revision(), written, "not written again");
    assert_eq!(
        keys_under(&mut client, "/kv-demo/").await,
        ["/kv-demo/left"]
    );
}

#[tokio::test]
async fn a_key_inside_the_demo_prefix_is_refused_up_front_for_that_reason() {
    // Issue 15 (8e): `--key /kv-demo/x` was written, then refused as a key "which this program did not
    // write". It is refused before anything is written, and the message says why.
    let etcd = TestEtcd::start().await;
    for (args, prefix) in [
        (vec!["--key", "/kv-demo/x"], "/kv-demo/"),
        (vec!["--key", "/d/x", "--demo-prefix", "/d/"], "/d/"),
    ] {
        let out = assert_refused(
            KV,
            &etcd.endpoint(),
            &args,
            &format!("--key {} is inside --demo-prefix {prefix}", args[1]),
        )
        .await;
        assert!(
            out.stderr.contains("choose a --key outside"),
            "says what to do: {out:#?}"
        );
        assert!(
            !out.stderr.contains("did not write"),
            "no false reason: {out:#?}"
        );
        let mut client = etcd.client().await;
        assert!(keys_under(&mut client, prefix).await.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn dead_endpoint_fails_fast_with_one_clear_line() {
    assert_fails_fast_on_dead_endpoint(KV, &[]).await;
}
#[tokio::test]
async fn dead_endpoint_with_backtraces_on_still_prints_one_line() {
    let dead = format!("127.0.0.1:{}", free_port());
    let out = Bin::spawn_with_env(
        KV,
        &dead,
        &["--dial-timeout", "1"],
        &[("RUST_BACKTRACE", "1")],
    )
    .finish(LIMIT)
    .await;
    assert_clean_failure(&out);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[tokio::test]
async fn bad_input_is_refused_without_touching_etcd() {
    let etcd = TestEtcd::start().await;
    for (args, why) in [
        (vec!["--key", ""], "--key"),
        (vec!["--endpoints", "localhost"], "not an endpoint"),
        (vec!["--endpoints", "127.0.0.1:notaport"], "no valid port"),
        (vec!["--dial-timeout", "0"], "more than 0"),
    ] {
        assert_refused(KV, &etcd.endpoint(), &args, why).await;
    }
    let mut client = etcd.client().await;
    assert_eq!(
        get_value(&mut client, "name").await,
        None,
        "nothing was written"
    );
}
#[tokio::test]
async fn closed_output_pipe_ends_quietly_instead_of_panicking() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let etcd = TestEtcd::start().await;
    // As in `kv | head -1`: the reader is gone before kv prints.
    let mut child = tokio::process::Command::new(KV)
        .env("ETCD_ENDPOINTS", etcd.endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("kv exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let sigpipe = test_etcd::Signal::SIGPIPE as i32;
    assert_eq!(out.status.signal(), Some(sigpipe), "{:?}", out.status);
}

#[tokio::test]
async fn a_dead_member_in_the_endpoint_list_does_not_break_the_run() {
    // Failed 20 of 20 runs, in either order, before the shared connect left dead members out.
    let etcd = TestEtcd::start().await;
    let dead = format!("127.0.0.1:{}", free_port());
    for endpoints in [
        format!("{dead},{}", etcd.endpoint()),
        format!("{},{dead}", etcd.endpoint()),
    ] {
        let out = Bin::run(KV, &endpoints, &[], LIMIT).await;
        assert!(out.status.success(), "{endpoints}: {out:#?}");
        assert!(
            out.stdout
                .contains("6. deleted the 3 keys this run created"),
            "{out:#?}"
        );
        let mut client = etcd.client().await;
        assert!(keys_under(&mut client, "/kv-demo/").await.is_empty());
    }
}
