//! The lease keeper's fault tests: etcd restarted, frozen, down past the TTL, the lease revoked, and normal
//! running, each against `recipes::kept_lease::KeptLease` driven as the keepalive topic drives it, and
//! against `Session` (the same `KeptLease` in a task of its own) driven as the lock topic drives it.
//!
//! Everything runs in-process against a real etcd (`test_etcd::TestEtcd`) that is killed, restarted,
//! frozen (SIGSTOP) and stopped under the keeper, with TTLs of 3 to 5 seconds.

use std::time::{Duration, Instant};

use etcd_client::{Client, LockOptions, PutOptions};
use recipes::kept_lease::{KeptLease, Renewal, Session};
use test_etcd::TestEtcd;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the keeper ended.
#[derive(Debug)]
enum Ended {
    /// etcd said the lease no longer exists (it expired or was revoked).
    Gone(String),
    /// The keeper gave up: no renewal was confirmed within the TTL.
    Lost(String),
}

/// What the keeper reported when it ended.
#[derive(Debug)]
struct Outcome {
    ended: Ended,
    /// When the keeper reported it.
    at: Instant,
    /// The keeper's own deadline at that moment: its last confirmed renewal + TTL.
    deadline: Instant,
}

/// A lease kept alive by the keeper in a task of its own, with a key on it.
struct Kept {
    id: i64,
    /// The TTL etcd granted, in seconds.
    ttl: i64,
    /// A key attached to the lease.
    key: String,
    /// When the keeper opened its keep-alive stream, which renewed the lease: its renewals are due every
    /// TTL/3 from then.
    opened: Instant,
    /// Sent once, when the keeper ends.
    outcome: oneshot::Receiver<Outcome>,
    task: JoinHandle<()>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The key `KeptLease`'s driver puts on the lease.
const KEY: &str = "/faults/key";

/// The lock whose key `Session`'s driver holds on the lease.
const NAME: &str = "/faults/lock";

/// The two ways the topics keep a lease: [`KeptLease`] renewed by the caller (keepalive, discovery's
/// register), and [`Session`], the same `KeptLease` renewed in a task of its own (lock, election). Every
/// scenario runs against both.
#[derive(Debug, Clone, Copy)]
enum Keeper {
    KeptLease,
    Session,
}

async fn keep(keeper: Keeper, etcd: &TestEtcd, ttl: i64) -> Kept {
    match keeper {
        Keeper::KeptLease => keep_kept_lease(etcd, ttl).await,
        Keeper::Session => keep_session(etcd, ttl).await,
    }
}

/// The driver for `KeptLease`, as `src/main.rs` runs it: grant a lease, put the key on it,
/// open the keep-alive stream with `client.lease_keep_alive(id)`, hand its two ends to `KeptLease::new`,
/// then loop on `renew_when_due()`, calling `reopen()` when the stream breaks. `Renewal::Gone`, or a
/// `reopen` that fails because etcd says the lease is gone, ends it as gone; a `reopen` that runs out of
/// time ends it as lost.
async fn keep_kept_lease(etcd: &TestEtcd, ttl: i64) -> Kept {
    let mut client = connect(etcd).await;
    let grant = client.lease_grant(ttl, None).await.expect("grant a lease");
    let (id, ttl) = (grant.id(), grant.ttl());
    client
        .put(KEY, "kept", Some(PutOptions::new().with_lease(id)))
        .await
        .expect("put the key on the lease");
    let (keeper, stream) = client
        .lease_keep_alive(id)
        .await
        .expect("open a keep-alive stream");
    let mut lease = KeptLease::new(id, ttl, keeper, stream);
    let opened = Instant::now();
    let (report, outcome) = oneshot::channel();
    let task = tokio::spawn(async move {
        let ended = loop {
            match lease.renew_when_due().await {
                Ok(Renewal::Alive { .. }) => {}
                Ok(Renewal::Gone) => {
                    break Ended::Gone(format!("lease {id:016x} is gone: {}", lease.why_gone()))
                }
                Err(_broken) => {
                    if let Err(e) = lease.reopen(&mut client).await {
                        let why = format!("{e:#}");
                        break if why.contains("is gone") {
                            Ended::Gone(why)
                        } else {
                            Ended::Lost(why)
                        };
                    }
                }
            }
        };
        let _ = report.send(Outcome {
            ended,
            at: Instant::now(),
            deadline: lease.deadline(),
        });
    });
    Kept {
        id,
        ttl,
        key: KEY.to_string(),
        opened,
        outcome,
        task,
    }
}

/// The driver for `Session`, as `src/contender.rs` (`contend`) runs it: grant a lease, start a session on
/// it, lock with the lease, and wait on `session.lost()`. The lock key `<NAME>/<lease>` is the key on the
/// lease. `lost()` only says why in words, so the words decide between gone and lost.
async fn keep_session(etcd: &TestEtcd, ttl: i64) -> Kept {
    let mut client = connect(etcd).await;
    let grant = client.lease_grant(ttl, None).await.expect("grant a lease");
    let (id, ttl) = (grant.id(), grant.ttl());
    let opened = Instant::now();
    let mut session = Session::start(&client, id, ttl)
        .await
        .expect("start a session");
    let locked = client
        .lock(NAME, Some(LockOptions::new().with_lease(id)))
        .await
        .expect("lock a free lock");
    let key = String::from_utf8_lossy(locked.key()).into_owned();
    let (report, outcome) = oneshot::channel();
    let task = tokio::spawn(async move {
        let why = session.lost().await;
        let at = Instant::now();
        let ended = if why.contains("no longer exists") {
            Ended::Gone(why)
        } else {
            Ended::Lost(why)
        };
        let _ = report.send(Outcome {
            ended,
            at,
            deadline: session.alive_until(),
        });
    });
    Kept {
        id,
        ttl,
        key,
        opened,
        outcome,
        task,
    }
}

// ---- Everything below is the same in both files. ----

/// A bound for each call the test itself makes, so that no check can hang.
const CALL: Duration = Duration::from_secs(5);

/// The client a topic's main.rs uses: `etcd_connect::connect`, with its HTTP/2 keep-alive pings.
async fn connect(etcd: &TestEtcd) -> Client {
    let args = etcd_connect::ConnectArgs::new(
        vec![etcd_connect::parse_endpoint(&etcd.endpoint()).expect("a loopback endpoint")],
        Duration::from_secs(5),
    );
    etcd_connect::connect(&args)
        .await
        .expect("connect to the test member")
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s as u64)
}

impl Kept {
    /// Panics if the keeper has reported anything (while it should keep the lease).
    fn still_keeping(&mut self) {
        match self.outcome.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => {}
            Ok(outcome) => panic!("the keeper gave up: {outcome:?}"),
            Err(oneshot::error::TryRecvError::Closed) => panic!("the keeper's task stopped"),
        }
    }

    /// The keeper's report, which must come within `limit`.
    async fn outcome_within(&mut self, limit: Duration) -> Outcome {
        tokio::time::timeout(limit, &mut self.outcome)
            .await
            .unwrap_or_else(|_| panic!("the keeper reported nothing within {limit:?}"))
            .expect("the keeper's task reports before it ends")
    }
}

/// The lease's remaining TTL as etcd reports it (whole seconds, -1 once the lease is gone).
async fn remaining(client: &mut Client, id: i64) -> i64 {
    tokio::time::timeout(CALL, client.lease_time_to_live(id, None))
        .await
        .expect("etcd answers lease_time_to_live")
        .expect("lease_time_to_live succeeds")
        .ttl()
}

/// The lease `key` is on (0 for none), or `None` if the key does not exist.
async fn lease_of(client: &mut Client, key: &str) -> Option<i64> {
    tokio::time::timeout(CALL, client.get(key, None))
        .await
        .expect("etcd answers a get")
        .expect("a get succeeds")
        .kvs()
        .first()
        .map(|kv| kv.lease())
}

/// For `span`, every 100 ms: the keeper has reported nothing, the lease exists, and the key is still on
/// it. Returns the remaining TTLs etcd reported, in order.
async fn stays_kept(client: &mut Client, kept: &mut Kept, span: Duration) -> Vec<i64> {
    let until = Instant::now() + span;
    let mut left = Vec::new();
    while Instant::now() < until {
        kept.still_keeping();
        let ttl = remaining(client, kept.id).await;
        // etcd answers -1 for a lease that no longer exists; 0 only means less than a second is left,
        // which happens right after a freeze, before the keeper's pending renewal is served.
        assert!(
            ttl >= 0,
            "lease {:016x} is gone although the keeper did not say so",
            kept.id
        );
        assert_eq!(
            lease_of(client, &kept.key).await,
            Some(kept.id),
            "{} is still on the lease",
            kept.key
        );
        left.push(ttl);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kept.still_keeping();
    left
}

async fn survives_an_etcd_restart_within_the_ttl(keeper: Keeper) {
    let mut etcd = TestEtcd::start().await;
    let mut kept = keep(keeper, &etcd, 5).await;
    let ttl = secs(kept.ttl);

    // A crash of etcd (SIGKILL), and a restart on the same ports and data.
    etcd.kill();
    let killed = Instant::now();
    etcd.restart().await;
    assert!(
        killed.elapsed() < ttl,
        "etcd took {:?} to come back, longer than the TTL: the scenario needs a faster restart",
        killed.elapsed()
    );

    // etcd extends every lease by about one election timeout when it comes back, so only renewals can
    // keep the lease for three TTLs more.
    let mut client = etcd.client().await;
    stays_kept(&mut client, &mut kept, 3 * ttl).await;
}

/// The freeze a kept lease is sure to ride out, wherever it falls between two renewals: two thirds of the
/// TTL, less a second. etcd last served a renewal at most TTL/3 (the renewal period) before the freeze
/// starts, and the lease ends one TTL after that renewal. The renewal sent during the freeze waits in the
/// open connection, and etcd serves it as soon as it runs again; the second is for etcd to wake up and
/// serve it. "Any freeze shorter than the TTL" is not true: one that starts late in a period ends after
/// the lease did.
fn longest_freeze(ttl: Duration) -> Duration {
    ttl - ttl / 3 - Duration::from_secs(1)
}

async fn survives_a_freeze_of_two_thirds_of_the_ttl_less_a_second(keeper: Keeper) {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut kept = keep(keeper, &etcd, 6).await;
    let ttl = secs(kept.ttl);

    // SIGSTOP: etcd keeps its sockets open and accepts connections, but answers nothing. The worst case:
    // the freeze starts just before a renewal is due, so the last renewal etcd served (the one that
    // opened the stream) is a whole renewal period old, and that renewal gets no answer within TTL/3: the
    // keeper finds its stream broken while etcd is still frozen, and must re-open it once etcd answers.
    // The freeze lasts exactly the bound, so it ends a second before that renewal's TTL is over.
    let due = kept.opened + ttl / 3;
    tokio::time::sleep_until((due - Duration::from_millis(50)).into()).await;
    etcd.freeze();
    tokio::time::sleep(longest_freeze(ttl)).await;
    etcd.thaw();
    kept.still_keeping();

    stays_kept(&mut client, &mut kept, 3 * ttl).await;
}

async fn reports_gone_when_the_lease_is_revoked(keeper: Keeper) {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut kept = keep(keeper, &etcd, 3).await;
    let ttl = secs(kept.ttl);

    // Another client (an operator with `etcdctl lease revoke`) ends the lease the keeper renews.
    tokio::time::timeout(CALL, client.lease_revoke(kept.id))
        .await
        .expect("etcd answers the revoke")
        .expect("the revoke succeeds");
    let revoked = Instant::now();

    // The next renewal, at most a third of the TTL later, finds it gone.
    let bound = ttl / 3 + Duration::from_secs(1);
    let outcome = kept.outcome_within(ttl).await;
    let Ended::Gone(why) = &outcome.ended else {
        panic!("reported lost rather than gone: {outcome:?}");
    };
    assert!(
        outcome.at.duration_since(revoked) <= bound,
        "noticed {:?} after the revoke, more than {bound:?}",
        outcome.at.duration_since(revoked)
    );
    assert!(
        why.contains(&format!("{:016x}", kept.id)),
        "names the lease: {why}"
    );
    // The lease had most of its TTL left, so it cannot have expired: say it was revoked.
    assert!(
        why.contains("revoked") && !why.contains("expired"),
        "says it was revoked, not that it expired: {why}"
    );
    assert_eq!(
        lease_of(&mut client, &kept.key).await,
        None,
        "etcd deleted the key with it"
    );
}

async fn reports_lost_when_etcd_stays_down_past_the_ttl(keeper: Keeper) {
    let mut etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut kept = keep(keeper, &etcd, 3).await;
    let ttl = secs(kept.ttl);
    let margin = Duration::from_secs(3);
    // A few renewals first, so that the deadline comes from a renewal, not from opening the stream.
    stays_kept(&mut client, &mut kept, ttl).await;

    let stopping = Instant::now();
    etcd.stop();
    let stopped = Instant::now();

    let outcome = kept
        .outcome_within(ttl + margin + Duration::from_secs(2))
        .await;
    let Ended::Lost(why) = &outcome.ended else {
        panic!("reported gone while etcd was down: {outcome:?}");
    };
    assert!(
        why.contains(&format!("{:016x}", kept.id)) && why.contains("within its TTL"),
        "says that no renewal got through within the TTL: {why}"
    );
    // The last confirmed renewal was sent before etcd stopped, and at most a renewal period (TTL/3) before
    // (with half a second for a slow answer).
    assert!(
        outcome.deadline <= stopped + ttl,
        "the deadline is a renewal + TTL, and no renewal came after the stop: {outcome:?}"
    );
    assert!(
        outcome.deadline + ttl / 3 + Duration::from_millis(500) >= stopping + ttl,
        "the last confirmed renewal was at most TTL/3 before the stop: {:?} after stopping, {outcome:?}",
        outcome.deadline.saturating_duration_since(stopping)
    );
    // Not while the lease could still be alive, and not much later.
    assert!(
        outcome.at >= outcome.deadline,
        "gave up {:?} before the last renewal + TTL",
        outcome.deadline - outcome.at
    );
    assert!(
        outcome.at <= outcome.deadline + margin,
        "gave up {:?} after the last renewal + TTL",
        outcome.at - outcome.deadline
    );
}

async fn renews_at_a_third_of_the_ttl(keeper: Keeper) {
    let etcd = TestEtcd::start().await;
    let mut client = etcd.client().await;
    let mut kept = keep(keeper, &etcd, 5).await;
    let span = 3 * secs(kept.ttl);

    let left = stays_kept(&mut client, &mut kept, span).await;
    // etcd reports whole seconds, rounded down. Renewed every TTL/3, the lease never has less than two
    // thirds of its TTL left: it never drops to a third, and it would without renewals.
    let lowest = *left.iter().min().expect("samples were taken");
    assert!(
        lowest * 3 >= kept.ttl,
        "the remaining TTL fell to {lowest}s of {}s: {left:?}",
        kept.ttl
    );
    // Each renewal puts the remaining TTL back up (from 3 to 4 with a TTL of 5): count them. Every TTL/3
    // makes 9 in three TTLs; every TTL/2 would make 6; much more often, more than 10 (or none visible).
    let renewals = left.windows(2).filter(|w| w[1] > w[0]).count() as u32;
    let expected = span.as_millis() as u32 / (secs(kept.ttl) / 3).as_millis() as u32;
    assert!(
        renewals + 2 >= expected && renewals <= expected + 1,
        "{renewals} renewals seen in {span:?}, expected about {expected}: {left:?}"
    );
}

mod kept_lease {
    use super::Keeper;

    #[tokio::test]
    async fn survives_an_etcd_restart_within_the_ttl() {
        super::survives_an_etcd_restart_within_the_ttl(Keeper::KeptLease).await
    }

    #[tokio::test]
    async fn survives_a_freeze_of_two_thirds_of_the_ttl_less_a_second() {
        super::survives_a_freeze_of_two_thirds_of_the_ttl_less_a_second(Keeper::KeptLease).await
    }

    #[tokio::test]
    async fn reports_gone_when_the_lease_is_revoked() {
        super::reports_gone_when_the_lease_is_revoked(Keeper::KeptLease).await
    }

    #[tokio::test]
    async fn reports_lost_when_etcd_stays_down_past_the_ttl() {
        super::reports_lost_when_etcd_stays_down_past_the_ttl(Keeper::KeptLease).await
    }

    #[tokio::test]
    async fn renews_at_a_third_of_the_ttl() {
        super::renews_at_a_third_of_the_ttl(Keeper::KeptLease).await
    }
}

mod session {
    use super::Keeper;

    #[tokio::test]
    async fn survives_an_etcd_restart_within_the_ttl() {
        super::survives_an_etcd_restart_within_the_ttl(Keeper::Session).await
    }

    #[tokio::test]
    async fn survives_a_freeze_of_two_thirds_of_the_ttl_less_a_second() {
        super::survives_a_freeze_of_two_thirds_of_the_ttl_less_a_second(Keeper::Session).await
    }

    #[tokio::test]
    async fn reports_gone_when_the_lease_is_revoked() {
        super::reports_gone_when_the_lease_is_revoked(Keeper::Session).await
    }

    #[tokio::test]
    async fn reports_lost_when_etcd_stays_down_past_the_ttl() {
        super::reports_lost_when_etcd_stays_down_past_the_ttl(Keeper::Session).await
    }

    #[tokio::test]
    async fn renews_at_a_third_of_the_ttl() {
        super::renews_at_a_third_of_the_ttl(Keeper::Session).await
    }
}
