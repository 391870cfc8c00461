//! The exercises are honest: every starter fails its check, saying "not yet" with a hint, and every
//! solution passes, against a real etcd. The checker runs the binaries `cargo test` has built
//! (`WORKSHOP_BIN_DIR`), as a learner's `cargo run -p workshop -- check N` runs the ones it builds.

use std::path::Path;
use std::time::Duration;

use test_etcd::{keys_under, Bin, TestEtcd};

const CHECKER: &str = env!("CARGO_BIN_EXE_workshop");
const LIMIT: Duration = Duration::from_secs(90);

async fn check(etcd: &TestEtcd, number: &str, solution: bool) -> test_etcd::Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ex01"))
        .parent()
        .expect("a folder");
    let mut args = vec!["check", number];
    if solution {
        args.push("--solution");
    }
    let env = [("WORKSHOP_BIN_DIR", bin_dir.to_str().expect("UTF-8"))];
    Bin::spawn_with_env(CHECKER, &etcd.endpoint(), &args, &env)
        .finish(LIMIT)
        .await
}

async fn starter_fails_and_solution_passes(number: &str) {
    let etcd = TestEtcd::start().await;
    let starter = check(&etcd, number, false).await;
    assert_eq!(starter.status.code(), Some(1), "{starter:#?}");
    assert!(
        starter.stdout.contains(": not yet: ")
            && starter.stdout.contains("; hint: ")
            && starter.stdout.contains("; read crates/"),
        "{starter:#?}"
    );
    let solution = check(&etcd, number, true).await;
    assert_eq!(solution.status.code(), Some(0), "{solution:#?}");
    assert!(
        solution.stdout.trim_end().ends_with(": done"),
        "{solution:#?}"
    );
    // The checker deleted what the exercise wrote, and nothing is left under the workshop's prefix.
    let mut client = etcd.client().await;
    assert_eq!(
        keys_under(&mut client, "/workshop/").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn exercise_1() {
    starter_fails_and_solution_passes("1").await;
}

#[tokio::test]
async fn exercise_2() {
    starter_fails_and_solution_passes("2").await;
}

#[tokio::test]
async fn exercise_3() {
    starter_fails_and_solution_passes("3").await;
}

#[tokio::test]
async fn exercise_4() {
    starter_fails_and_solution_passes("4").await;
}

#[tokio::test]
async fn exercise_5() {
    starter_fails_and_solution_passes("5").await;
}

#[tokio::test]
async fn exercise_6() {
    starter_fails_and_solution_passes("6").await;
}

#[tokio::test]
async fn exercise_7() {
    starter_fails_and_solution_passes("7").await;
}

#[tokio::test]
async fn an_exercise_that_does_not_exist_is_one_clear_line() {
    let etcd = TestEtcd::start().await;
    let out = check(&etcd, "9", false).await;
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert_eq!(
        out.stderr.trim(),
        "error: there is no exercise 9: they are numbered 1 to 7"
    );
}
