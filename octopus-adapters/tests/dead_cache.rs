//! A memcached that hangs (the fault proxy blackholes it) costs reads half
//! its deadline only until the level's breaker opens; then reads skip the
//! level and the primary answers them, and writes hand their invalidations
//! to the retry queue. When memcached answers again the level serves again.
#![cfg(all(feature = "memcache", feature = "sqlite"))]

use std::sync::Arc;
use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use octopus::{BreakerState, CachePolicy, Dao, Model, Plan};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::sqlite::SqliteStore;
use octopus_test_support::memcache::{fresh_namespace, memcache_addr};
use octopus_test_support::{check, eventually};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "gauges")]
struct Gauge {
    #[octopus(key)]
    id: u64,
    level: i64,
}

/// memcached behind the fault proxy (100 ms deadline) in front of SQLite
/// in `dir`: the proxy, the plan and a Dao over it.
async fn setup(name: &str, dir: &std::path::Path) -> (FaultProxy, Arc<Plan>, Dao<Gauge>) {
    let proxy = FaultProxy::start(memcache_addr()).await.unwrap();
    let options = MemcacheOptions::from_url(&format!("memcache://{}", proxy.addr()))
        .unwrap()
        .namespace(&fresh_namespace(name))
        .unwrap()
        .timeout(Duration::from_millis(100));
    let remote = Arc::new(MemcacheStore::with_options(options).await.unwrap());
    let primary = Arc::new(SqliteStore::open(dir.join("g.db")).await.unwrap());
    let plan = Arc::new(
        Plan::builder(primary)
            .cache(remote, CachePolicy::Invalidate)
            .build()
            .unwrap(),
    );
    let gauges: Dao<Gauge> = Dao::open(plan.clone()).await.unwrap();
    (proxy, plan, gauges)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_memcached_is_skipped_once_its_breaker_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, plan, gauges) = setup("dead-cache", dir.path()).await;
    for id in 0..50 {
        gauges.create(&mut Gauge { id, level: 0 }).await.unwrap();
    }
    proxy.set(Mode::Blackhole).await;

    // Every read is answered (by the primary) while the level times out,
    // until its breaker opens.
    let mut reads = 0;
    while plan.stats().levels[0].breaker.state != BreakerState::Open {
        assert!(
            reads < 100,
            "the level's breaker never opened: {:?}",
            plan.stats()
        );
        let id = reads % 50;
        assert_eq!(gauges.read(id).await.unwrap(), Some(Gauge { id, level: 0 }));
        reads += 1;
    }
    // Each of those lookups was given up after half the level's deadline
    // (50 ms), not the whole of it, and counted against the breaker.
    assert_eq!(
        plan.stats().levels[0].gave_up,
        reads,
        "{:?}",
        plan.stats().levels[0]
    );
    // Now the level is skipped without a call; writes still succeed.
    let rejected = plan.stats().levels[0].breaker.rejected;
    for id in 0..20u64 {
        assert_eq!(gauges.read(id).await.unwrap().unwrap().id, id);
    }
    gauges.update(&mut Gauge { id: 1, level: 5 }).await.unwrap();
    assert_eq!(gauges.read(1u64).await.unwrap().unwrap().level, 5);
    let stats = plan.stats();
    assert!(
        stats.levels[0].breaker.rejected >= rejected + 22,
        "reads and the write's invalidation skip the open level: {stats:?}"
    );

    // memcached answers again: the breaker lets probes through and closes.
    proxy.set(Mode::Pass).await;
    let mut tries = 0;
    eventually(
        "the level to serve again",
        Duration::from_secs(10),
        async || {
            let stats = plan.stats();
            if stats.levels[0].breaker.state == BreakerState::Closed {
                return Ok(());
            }
            // Reads are what lets the probes through.
            let _ = gauges.read(tries % 50).await.unwrap();
            tries += 1;
            Err(stats)
        },
    )
    .await;
    assert_eq!(gauges.read(1u64).await.unwrap().unwrap().level, 5);
}

/// memcached hangs (its data intact) while rows it holds are updated, for
/// longer than the invalidations' first retries; when it answers again, it
/// must not serve the rows from before the updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_comes_back_with_its_data_serves_no_old_row() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, plan, gauges) = setup("dead-cache-back", dir.path()).await;
    for id in 0..5 {
        gauges.create(&mut Gauge { id, level: 0 }).await.unwrap();
        // Cached in memcached.
        gauges.read(id).await.unwrap().unwrap();
    }
    proxy.set(Mode::Blackhole).await;
    for id in 0..5 {
        gauges.update(&mut Gauge { id, level: 1 }).await.unwrap();
    }
    // Well past the first retries (20 ms doubling to 640 ms).
    eventually(
        "the invalidations to be retried",
        Duration::from_secs(20),
        async || {
            let stats = plan.stats();
            check(stats.invalidation_retries >= 12, stats)
        },
    )
    .await;
    proxy.set(Mode::Pass).await;
    let what = "memcached, back, to serve no row from before the updates";
    eventually(what, Duration::from_secs(10), async || {
        let mut levels = Vec::new();
        for id in 0..5u64 {
            levels.push(gauges.read(id).await.unwrap().unwrap().level);
        }
        check(levels.iter().all(|&l| l == 1), (levels, plan.stats()))
    })
    .await;
    assert_eq!(plan.stats().invalidations_abandoned, 0);
}

/// Updates `ids` to `level` while memcached hangs, then lets it answer
/// again: the caller reads right away, before the invalidations' retries
/// (backed off to 640 ms by then) land.
async fn update_while_blackholed(
    proxy: &FaultProxy, plan: &Plan, gauges: &Dao<Gauge>, ids: std::ops::Range<u64>, level: i64,
) {
    proxy.set(Mode::Blackhole).await;
    for id in ids {
        gauges.update(&mut Gauge { id, level }).await.unwrap();
    }
    let retried = plan.stats().invalidation_retries;
    eventually(
        "the invalidations to be retried for a while",
        Duration::from_secs(20),
        async || {
            let stats = plan.stats();
            check(stats.invalidation_retries >= retried + 6, stats)
        },
    )
    .await;
    proxy.set(Mode::Reset).await;
    proxy.set(Mode::Pass).await;
}

/// Every read of `ids`, from the first after memcached answers again, is
/// `level`; (id, level) of any that is not.
async fn reads_after_heal(
    gauges: &Dao<Gauge>, ids: std::ops::Range<u64>, level: i64,
) -> Vec<(u64, i64)> {
    let mut wrong = Vec::new();
    for _ in 0..4 {
        for id in ids.clone() {
            let got = gauges.read(id).await.unwrap().unwrap().level;
            if got != level {
                wrong.push((id, got));
            }
        }
    }
    wrong
}

/// The same, but checked from the very first read after memcached answers
/// again: a key whose invalidation is still queued for retry is not served
/// from memcached (it is invalidated there and read from the primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_queued_for_retry_is_not_served_from_the_level_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, plan, gauges) = setup("dead-cache-queued", dir.path()).await;
    for id in 0..5 {
        gauges.create(&mut Gauge { id, level: 0 }).await.unwrap();
        gauges.read(id).await.unwrap().unwrap();
    }
    update_while_blackholed(&proxy, &plan, &gauges, 0..5, 1).await;
    let wrong = reads_after_heal(&gauges, 0..5, 1).await;
    assert!(
        wrong.is_empty(),
        "reads of rows from before the updates: {wrong:?}; {:?}",
        plan.stats()
    );
}

/// Two servers under a fleet lease share memcached. It hangs while server
/// A updates rows it holds (A's invalidations queue for retry in A); server
/// B, whose reads saw memcached fail, does not trust memcached's rows for a
/// while after it answers again, so it never reads the rows A's retries
/// have not yet invalidated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_server_does_not_trust_a_cache_that_just_came_back() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = FaultProxy::start(memcache_addr()).await.unwrap();
    let namespace = fresh_namespace("dead-cache-fleet");
    let primary = Arc::new(SqliteStore::open(dir.path().join("g.db")).await.unwrap());
    let mut servers = Vec::new();
    for _ in 0..2 {
        let options = MemcacheOptions::from_url(&format!("memcache://{}", proxy.addr()))
            .unwrap()
            .namespace(&namespace)
            .unwrap()
            .timeout(Duration::from_millis(100));
        let remote = Arc::new(MemcacheStore::with_options(options).await.unwrap());
        let plan = Arc::new(
            Plan::builder(primary.clone())
                .cache(remote, CachePolicy::Invalidate)
                .fleet_lease(Duration::from_millis(20))
                .build()
                .unwrap(),
        );
        let gauges: Dao<Gauge> = Dao::open(plan.clone()).await.unwrap();
        servers.push((plan, gauges));
    }
    let [(plan_a, a), (plan_b, b)] = &servers[..] else {
        unreachable!()
    };
    for id in 0..5 {
        a.create(&mut Gauge { id, level: 0 }).await.unwrap();
        // Cached in memcached, by B.
        b.read(id).await.unwrap().unwrap();
    }
    proxy.set(Mode::Blackhole).await;
    // B sees memcached fail (a lookup given up): the primary answers.
    assert_eq!(b.read(0u64).await.unwrap().unwrap().level, 0);
    update_while_blackholed(&proxy, plan_a, a, 0..5, 1).await;
    let wrong = reads_after_heal(b, 0..5, 1).await;
    assert!(
        wrong.is_empty(),
        "B read rows from before A's updates: {wrong:?}; B {:?}; A {:?}",
        plan_b.stats(),
        plan_a.stats()
    );
}
