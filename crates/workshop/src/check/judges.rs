//! One judge per exercise: what it must print, and what it must leave in etcd.

use std::time::Duration;

use anyhow::Result;
use etcd_client::{Client, GetOptions, Txn, TxnOp};

use super::{failure, Run, Verdict};

const RUN_LIMIT: Duration = Duration::from_secs(30);

/// What the checker writes before the exercise runs: the second key of exercise 2.
pub async fn prepare(number: usize, client: &mut Client) -> Result<()> {
    if number == 2 {
        client.put(SECOND_KEY, "large", None).await?;
    }
    Ok(())
}

pub async fn judge(number: usize, run: Run, client: &mut Client) -> Result<Verdict> {
    match number {
        1 => put_get(run, client).await,
        2 => old_revision(run, client).await,
        3 => watch(run, client).await,
        4 => lease(run, client).await,
        5 => keepalive(run, client).await,
        6 => lock(run, client).await,
        _ => put_if_absent(run, client).await,
    }
}

/// Runs the program to its end: its lines if it exited 0, or the verdict saying why not.
async fn ran(run: Run) -> Result<Vec<String>, Verdict> {
    match run.finish(RUN_LIMIT).await {
        (Ok(_), lines) => Ok(lines),
        (Err(stderr), _) => {
            let (what, hint) = failure(&stderr);
            Err(Verdict::not_yet(what, &hint))
        }
    }
}

/// The verdict for a line the program should have printed.
fn missing(lines: &[String], line: &str, hint: &str) -> Option<Verdict> {
    (!lines.iter().any(|l| l == line))
        .then(|| Verdict::not_yet(format!("it did not print `{line}`"), hint))
}

async fn value(client: &mut Client, key: &str) -> Result<Option<String>> {
    let got = client.get(key, None).await?;
    Ok(got
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
}

async fn put_get(run: Run, client: &mut Client) -> Result<Verdict> {
    let lines = match ran(run).await {
        Ok(lines) => lines,
        Err(verdict) => return Ok(verdict),
    };
    if value(client, "/workshop/01/greeting").await?.as_deref() != Some("hello") {
        return Ok(Verdict::not_yet(
            "etcd holds no /workshop/01/greeting = hello",
            "the PUT: client.put(KEY, \"hello\", None)",
        ));
    }
    let hint = "the GET found nothing to print: client.get(KEY, None), with the KEY that was put";
    Ok(missing(&lines, "got /workshop/01/greeting = hello", hint).unwrap_or_else(Verdict::done))
}

/// Written before exercise 2 runs: a second key under its prefix, so that a read of the prefix is told
/// from a read of `color` alone.
pub const SECOND_KEY: &str = "/workshop/02/size";

async fn old_revision(run: Run, client: &mut Client) -> Result<Verdict> {
    let lines = match ran(run).await {
        Ok(lines) => lines,
        Err(verdict) => return Ok(verdict),
    };
    let red_at = lines
        .iter()
        .find_map(|l| l.strip_prefix("put /workshop/02/color = red at revision "))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("?");
    let prefix_read =
        "read every key under PREFIX: client.get(PREFIX, Some(GetOptions::new().with_prefix()))";
    for line in [
        "now: /workshop/02/color = blue",
        "now: /workshop/02/size = large",
    ] {
        if let Some(verdict) = missing(&lines, line, prefix_read) {
            return Ok(verdict);
        }
    }
    let hint = "the same prefix read, with .with_revision(red_revision) added to its options";
    for then in [
        format!("at revision {red_at}: /workshop/02/color = red"),
        format!("at revision {red_at}: /workshop/02/size = large"),
    ] {
        if let Some(verdict) = missing(&lines, &then, hint) {
            return Ok(verdict);
        }
    }
    let now = value(client, "/workshop/02/color").await?;
    Ok(if now.as_deref() == Some("blue") {
        Verdict::done()
    } else {
        Verdict::not_yet(
            "etcd does not hold /workshop/02/color = blue",
            "do not change the two PUTs",
        )
    })
}

async fn watch(mut run: Run, client: &mut Client) -> Result<Verdict> {
    if run
        .line_containing("watching", Duration::from_secs(15))
        .await
        .is_none()
    {
        return Ok(ended_early(run, "it never printed `watching`").await);
    }
    // Two changes in one transaction: one message with two events. Then a third, alone.
    let two_puts = Txn::new().and_then([
        TxnOp::put("/workshop/03/a", "1", None),
        TxnOp::put("/workshop/03/b", "2", None),
    ]);
    client.txn(two_puts).await?;
    client.delete("/workshop/03/a", None).await?;
    let prefix =
        "watch the whole prefix: WatchOptions::new().with_prefix(), then read stream.message()";
    for (line, hint) in [
        ("PUT /workshop/03/a = 1", prefix),
        (
            "PUT /workshop/03/b = 2",
            "one message can carry several events: print every one of resp.events()",
        ),
        (
            "DELETE /workshop/03/a",
            "print `DELETE <key>` for EventType::Delete",
        ),
    ] {
        if run
            .line_containing(line, Duration::from_secs(5))
            .await
            .is_none()
        {
            return Ok(match run.finish(Duration::from_secs(1)).await {
                (Err(stderr), _) if !stderr.starts_with("it was still running") => failed(&stderr),
                _ => Verdict::not_yet(format!("it did not print `{line}`"), hint),
            });
        }
    }
    if let (Err(stderr), _) = run.finish(RUN_LIMIT).await {
        return Ok(failed(&stderr));
    }
    Ok(Verdict::done())
}

/// The verdict for a program that stopped (or hung) before printing `what` it should have.
async fn ended_early(run: Run, what: &str) -> Verdict {
    match run.finish(Duration::from_secs(1)).await {
        (Err(stderr), _) if !stderr.starts_with("it was still running") => {
            let (why, hint) = failure(&stderr);
            Verdict::not_yet(format!("{what}; {why}"), &hint)
        }
        _ => Verdict::not_yet(
            format!("{what}, and did not end"),
            "the step before it waits forever",
        ),
    }
}

fn failed(stderr: &str) -> Verdict {
    let (what, hint) = failure(stderr);
    Verdict::not_yet(what, &hint)
}

async fn lease(run: Run, client: &mut Client) -> Result<Verdict> {
    let lines = match ran(run).await {
        Ok(lines) => lines,
        Err(verdict) => return Ok(verdict),
    };
    let lease = lines
        .iter()
        .find_map(|l| l.strip_prefix("granted lease "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|hex| i64::from_str_radix(hex, 16).ok());
    let Some(lease) = lease else {
        return Ok(Verdict::not_yet(
            "it printed no `granted lease <id>` line",
            "the Grant: client.lease_grant(2, None)",
        ));
    };
    if !lines
        .iter()
        .any(|l| l.starts_with("/workshop/04/temp is gone after"))
    {
        return Ok(Verdict::not_yet(
            "the key never went",
            "put the key WITH the lease: PutOptions::new().with_lease(lease.id())",
        ));
    }
    let ttl = client.lease_time_to_live(lease, None).await?.ttl();
    Ok(if ttl == -1 {
        Verdict::done()
    } else {
        Verdict::not_yet(
            format!("lease {lease:016x} still lives ({ttl}s left)"),
            "let the lease expire; do not renew it",
        )
    })
}

async fn keepalive(mut run: Run, client: &mut Client) -> Result<Verdict> {
    // Four renewals a second apart: the 3 s TTL has run out by then unless they really renew.
    for n in 1..=4 {
        if run
            .line_containing("renewed: ttl", Duration::from_secs(6))
            .await
            .is_none()
        {
            let verdict = ended_early(run, &format!("renewal {n} never came")).await;
            let hint =
                "each tick: keeper.keep_alive().await?, then answers.message().await?, then print";
            return Ok(if verdict.what.ends_with("did not end") {
                Verdict::not_yet(verdict.what, hint)
            } else {
                verdict
            });
        }
    }
    if value(client, "/workshop/05/alive").await?.is_none() {
        return Ok(Verdict::not_yet(
            "the key went although the program renews",
            "send on the keeper, then read the stream",
        ));
    }
    run.interrupt();
    let (ended, lines) = run.finish(Duration::from_secs(8)).await;
    if let Err(stderr) = ended {
        let (what, hint) = failure(&stderr);
        return Ok(Verdict::not_yet(format!("after Ctrl-C, {what}"), &hint));
    }
    if !lines.iter().any(|l| l.starts_with("revoked lease"))
        || value(client, "/workshop/05/alive").await?.is_some()
    {
        return Ok(Verdict::not_yet(
            "the key outlived Ctrl-C",
            "revoke the lease: client.lease_revoke(id)",
        ));
    }
    Ok(Verdict::done())
}

async fn lock(mut run: Run, client: &mut Client) -> Result<Verdict> {
    let before = leases(client).await?;
    if run
        .line_containing("released", Duration::from_secs(15))
        .await
        .is_none()
    {
        return Ok(ended_early(run, "no task released the lock").await);
    }
    if run
        .line_containing("acquired", Duration::from_secs(5))
        .await
        .is_none()
    {
        let hint = "unlock with the key the lock call returned: client.unlock(locked.key())";
        return Ok(Verdict::not_yet(
            "the other task never got the lock after the first released it",
            hint,
        ));
    }
    // `finish` returns every line printed, those read above included.
    let (ended, lines) = run.finish(RUN_LIMIT).await;
    if let Err(stderr) = ended {
        return Ok(failed(&stderr));
    }
    let turns: Vec<&String> = lines.iter().filter(|l| l.starts_with("task ")).collect();
    let alternate = turns.len() == 4
        && turns.chunks(2).all(|pair| {
            let task = pair[0].trim_end_matches(" acquired");
            pair[0].ends_with(" acquired") && pair[1] == &format!("{task} released")
        })
        && turns[0] != turns[2];
    if !alternate {
        return Ok(Verdict::not_yet(
            format!("the tasks did not hold the lock in turn: {turns:?}"),
            "both lock the same name, each with its own session's lease",
        ));
    }
    let left = client
        .get("/workshop/06/lock", Some(GetOptions::new().with_prefix()))
        .await?;
    if !left.kvs().is_empty() {
        return Ok(Verdict::not_yet(
            "a lock key is still there",
            "unlock with the key the lock call returned",
        ));
    }
    let after = leases(client).await?;
    Ok(if after.iter().any(|id| !before.contains(id)) {
        Verdict::not_yet(
            "a lease was left behind (etcd grants one of 60 s to a lock without a lease)",
            "lock on the session's lease: LockOptions::new().with_lease(lease_id)",
        )
    } else {
        Verdict::done()
    })
}

/// The IDs of the leases etcd holds now.
async fn leases(client: &mut Client) -> Result<Vec<i64>> {
    Ok(client
        .leases()
        .await?
        .leases()
        .iter()
        .map(|l| l.id())
        .collect())
}

async fn put_if_absent(run: Run, client: &mut Client) -> Result<Verdict> {
    let lines = match ran(run).await {
        Ok(lines) => lines,
        Err(verdict) => return Ok(verdict),
    };
    let hint = "when create_revision(KEY) == 0 put, else get: Txn::new().when(..).and_then(..).or_else(..)";
    for line in [
        "claimed /workshop/07/leader",
        "/workshop/07/leader is taken, by me",
    ] {
        if let Some(verdict) = missing(&lines, line, hint) {
            return Ok(verdict);
        }
    }
    Ok(
        if value(client, "/workshop/07/leader").await?.as_deref() == Some("me") {
            Verdict::done()
        } else {
            Verdict::not_yet("etcd does not hold /workshop/07/leader = me", hint)
        },
    )
}
