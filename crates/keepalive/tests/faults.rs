//! The real `keepalive` binary against an etcd that stalls (frozen with SIGSTOP: it accepts connections
//! but never answers) and against another client that overwrites its key.

use std::time::{Duration, Instant};

use test_etcd::{
    assert_clean_failure, assert_ctrl_c_while_connecting_stops_at_once, eventually, get_value,
    lease_exists, lease_id_in, lease_ids, lease_of, Bin, Signal, TestEtcd,
};

const KEEPALIVE: &str = env!("CARGO_BIN_EXE_keepalive");
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn keepalive_rides_out_a_freeze_shorter_than_its_ttl() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(KEEPALIVE, &etcd.endpoint(), &["--ttl", "5"]);
    let id = lease_id_in(&bin.line_containing("1. granted lease", LIMIT).await);
    // Just renewed: the lease has its full 5 s when the freeze starts.
    bin.line_containing("ttl: 5", LIMIT).await;

    // 3.8 s of silence: longer than a renewal's wait for its answer (TTL/3), shorter than the TTL. The
    // stream is declared broken and re-opened, in attempts bounded by TTL/3 with growing pauses.
    etcd.freeze();
    let frozen_at = tokio::time::Instant::now();
    let broke = bin
        .line_containing("keep-alive stream broke", Duration::from_millis(3800))
        .await;
    assert!(broke.contains("no keep-alive answer within"), "{broke}");
    tokio::time::sleep_until(frozen_at + Duration::from_millis(3800)).await;
    etcd.thaw();

    bin.line_containing("keep-alive stream re-opened", LIMIT)
        .await;
    assert_eq!(
        lease_of(&mut client, "name").await,
        Some(id),
        "the lease and its key outlived the freeze"
    );
    // The program goes on renewing: the key outlives another full TTL.
    let thawed = Instant::now();
    while thawed.elapsed() <= Duration::from_secs(5) {
        bin.line_containing("ttl: 5", LIMIT).await;
    }
    assert_eq!(lease_of(&mut client, "name").await, Some(id));

    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "Ctrl-C: revoked lease {id:016x}, so etcd deleted name at once"
        )),
        "{}",
        out.stdout
    );
    assert_eq!(get_value(&mut client, "name").await, None);
    assert!(!lease_exists(&mut client, id).await);
}

#[tokio::test]
async fn revoke_against_a_frozen_etcd_is_bounded_by_the_dial_timeout() {
    let etcd = TestEtcd::start().await;
    let mut bin = Bin::spawn(
        KEEPALIVE,
        &etcd.endpoint(),
        &["--ttl", "5", "--dial-timeout", "2"],
    );
    let id = lease_id_in(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("ttl: 5", LIMIT).await;

    etcd.freeze();
    bin.signal(Signal::SIGINT);
    let signalled = Instant::now();
    let out = bin.finish(LIMIT).await;
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(2 + 2), "took {took:?}: {out:#?}");
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains("Ctrl-C: etcd did not answer within 2s")
            && out.stderr.contains("name goes when its TTL of 5s runs out"),
        "{}",
        out.stderr
    );

    // Nobody renews the lease, so etcd ends it on its own once it runs again.
    etcd.thaw();
    let mut client = etcd.client().await;
    eventually("the lease to expire", Duration::from_secs(5 + 2), || {
        let mut client = client.clone();
        async move { (!lease_exists(&mut client, id).await).then_some(()) }
    })
    .await;
    assert_eq!(get_value(&mut client, "name").await, None);
}

#[tokio::test]
async fn ctrl_c_while_connecting_stops_at_once() {
    let etcd = TestEtcd::start().await;
    assert_ctrl_c_while_connecting_stops_at_once(
        &etcd,
        KEEPALIVE,
        &[],
        "Ctrl-C while connecting: stopped; nothing was created in etcd",
    )
    .await;
    let mut client = etcd.client().await;
    assert!(lease_ids(&mut client).await.is_empty(), "no lease granted");
    assert_eq!(get_value(&mut client, "name").await, None);
}

#[tokio::test]
async fn keepalive_does_not_claim_a_delete_after_an_overwrite() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(KEEPALIVE, &etcd.endpoint(), &["--ttl", "5"]);
    let id = lease_id_in(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("ttl:", LIMIT).await;

    // Another client writes the key without a lease: that takes it off ours.
    client
        .put("name", "mine now", None)
        .await
        .expect("put works");
    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "Ctrl-C: revoked lease {id:016x}; name was overwritten by another client and is no longer on it, so it stays"
        )),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("deleted name"), "{}", out.stdout);
    assert!(!lease_exists(&mut client, id).await);
    assert_eq!(
        get_value(&mut client, "name").await.as_deref(),
        Some("mine now"),
        "what the program said: the key stays"
    );
}

#[tokio::test]
async fn a_lease_gone_after_an_overwrite_is_not_said_to_take_the_key() {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut bin = Bin::spawn(KEEPALIVE, &etcd.endpoint(), &["--ttl", "5"]);
    let id = lease_id_in(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("ttl:", LIMIT).await;

    client
        .put("name", "mine now", None)
        .await
        .expect("put works");
    // What `etcdctl lease revoke <id>` does.
    client.lease_revoke(id).await.expect("revoke works");
    let out = bin.finish(LIMIT).await;
    assert_clean_failure(&out);
    assert!(
        out.stderr.contains("it was revoked")
            && out.stderr.contains(
                "name is still there: another client overwrote it, which took it off the lease"
            ),
        "{}",
        out.stderr
    );
    assert_eq!(
        get_value(&mut client, "name").await.as_deref(),
        Some("mine now")
    );
}

/// etcd is killed and restarted within the TTL: the keep-alive stream breaks with the connection, and
/// the lease is fine. The line says so; it claims the lease is gone only when etcd says so.
#[tokio::test]
async fn an_etcd_restart_is_reported_as_a_broken_connection_not_a_gone_lease() {
    let mut etcd = TestEtcd::start().await;
    let mut bin = Bin::spawn(KEEPALIVE, &etcd.endpoint(), &["--ttl", "5"]);
    let id = lease_id_in(&bin.line_containing("1. granted lease", LIMIT).await);
    bin.line_containing("ttl: 5", LIMIT).await;

    etcd.restart().await;
    let broke = bin.line_containing("keep-alive stream broke", LIMIT).await;
    assert!(!broke.contains("gone"), "{broke}");
    assert!(broke.contains("connection to etcd"), "{broke}");
    bin.line_containing("keep-alive stream re-opened", LIMIT)
        .await;
    let mut client = etcd.client().await;
    assert_eq!(lease_of(&mut client, "name").await, Some(id));

    bin.signal(Signal::SIGINT);
    let out = bin.finish(LIMIT).await;
    assert!(out.status.success(), "{out:#?}");
}
