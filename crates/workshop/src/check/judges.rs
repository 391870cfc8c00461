//! One judge per exercise: what it must print, and what it must leave in etcd.

use std::time::Duration;

use anyhow::Result;
use etcd_client::{Client, GetOptions};

use super::{failure, Run, Verdict};

const RUN_LIMIT: Duration = Duration::from_secs(30);

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
    let hint = "print each key-value the GET returned";
    Ok(missing(&lines, "got /workshop/01/greeting = hello", hint).unwrap_or_else(Verdict::done))
}

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
    if let Some(verdict) = missing(
        &lines,
        "now: /workshop/02/color = blue",
        "the GET with GetOptions::new().with_prefix()",
    ) {
        return Ok(verdict);
    }
    let then = format!("at revision {red_at}: /workshop/02/color = red");
    let hint = "the same GET, with .with_revision(red_revision) added to its options";
    if let Some(verdict) = missing(&lines, &then, hint) {
        return Ok(verdict);
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
        let (ended, _) = run.finish(Duration::from_secs(1)).await;
        let (what, hint) = ended.err().map(|e| failure(&e)).unwrap_or_default();
        return Ok(Verdict::not_yet(
            format!("it never printed `watching`; {what}"),
            &hint,
        ));
    }
    client.put("/workshop/03/a", "1", None).await?;
    client.put("/workshop/03/b", "2", None).await?;
    client.delete("/workshop/03/a", None).await?;
    let lines = match ran(run).await {
        Ok(lines) => lines,
        Err(verdict) => return Ok(verdict),
    };
    for (line, hint) in [
        (
            "PUT /workshop/03/a = 1",
            "print `PUT <key> = <value>` for EventType::Put",
        ),
        (
            "PUT /workshop/03/b = 2",
            "print every event of every message, not only the first",
        ),
        (
            "DELETE /workshop/03/a",
            "print `DELETE <key>` for EventType::Delete",
        ),
    ] {
        if let Some(verdict) = missing(&lines, line, hint) {
            return Ok(verdict);
        }
    }
    Ok(Verdict::done())
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
            let (ended, _) = run.finish(Duration::from_secs(1)).await;
            let (what, hint) = ended.err().map(|e| failure(&e)).unwrap_or_default();
            return Ok(Verdict::not_yet(
                format!("renewal {n} never came; {what}"),
                &hint,
            ));
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

async fn lock(run: Run, client: &mut Client) -> Result<Verdict> {
    let lines = match ran(run).await {
        Ok(lines) => lines,
        Err(verdict) => return Ok(verdict),
    };
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
    Ok(if left.kvs().is_empty() {
        Verdict::done()
    } else {
        Verdict::not_yet(
            "a lock key is still there",
            "unlock with the key the lock call returned",
        )
    })
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
