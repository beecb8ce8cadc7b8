//! A MySQL primary behind a TCP fault proxy the test controls: the outage is
//! real (connections reset, then refused). Writes are journaled and served
//! from the journal and memcached; when MySQL returns, the journal drains
//! while new writes keep arriving, a restart in the middle of draining loses
//! nothing, and MySQL ends with the last acknowledged write per key.
#![cfg(all(feature = "mysql", feature = "memcache"))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use mysql_async::prelude::Queryable;
use octopus::journal::{Journal, JournalOptions};
use octopus::{BreakerOptions, CachePolicy, Dao, Error, MemoryStore, Model, Plan, WriteOutcome};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::memcache::memcache_store;
use octopus_test_support::mysql::{fresh_database, mysql_addr, url_via};
use octopus_test_support::{check, eventually, until_drained};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "carts")]
struct Cart {
    #[octopus(key)]
    id: u64,
    items: u32,
    #[octopus(version)]
    version: u64,
}

async fn rows(url: &str) -> BTreeMap<u64, u32> {
    let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
    let rows: Vec<(u64, u32)> = conn.query("SELECT id, items FROM carts").await.unwrap();
    conn.disconnect().await.unwrap();
    rows.into_iter().collect()
}

async fn plan(
    store: &Arc<MysqlStore>, cache: &Arc<octopus_adapters::memcache::MemcacheStore>,
    dir: &std::path::Path,
) -> Arc<Plan> {
    let journal = Journal::open(dir, JournalOptions::default().replay_batch(20));
    Arc::new(
        Plan::builder(store.clone())
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .cache(cache.clone(), CachePolicy::Invalidate)
            .breaker(BreakerOptions {
                window: 6,
                minimum_calls: 3,
                open_wait: Duration::from_millis(300),
                half_open_calls: 2,
                ..BreakerOptions::default()
            })
            .journal(journal.unwrap())
            .build()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_outage_loses_nothing() {
    let direct = fresh_database("outage_mysql").await;
    let proxy = FaultProxy::start(mysql_addr()).await.unwrap();
    let through = url_via(&direct, proxy.addr(), "deadline_ms=300&pool_size=4");
    let store = Arc::new(MysqlStore::new(&through).unwrap());
    let cache = Arc::new(memcache_store("outage-mysql").await);
    let dir = tempfile::tempdir().unwrap();
    let mut expected: BTreeMap<u64, u32> = BTreeMap::new();

    let plan1 = plan(&store, &cache, dir.path()).await;
    let carts: Dao<Cart> = Dao::open(plan1.clone()).await.unwrap();
    let mut all: Vec<Cart> = Vec::new();
    for id in 0..20 {
        let mut c = Cart {
            id,
            items: 1,
            version: 0,
        };
        assert_eq!(carts.create(&mut c).await.unwrap(), WriteOutcome::Primary);
        expected.insert(id, 1);
        all.push(c);
    }
    // The proxy really is in the path.
    assert!(proxy.connections() > 0);
    carts.read(0u64).await.unwrap();

    // Outage: every connection reset, then new ones refused.
    proxy.set(Mode::Reset).await;
    proxy.set(Mode::Refuse).await;
    for round in 0..5u32 {
        for c in all.iter_mut() {
            c.items = 10 + round;
            assert_eq!(carts.update(c).await.unwrap(), WriteOutcome::Journaled);
            expected.insert(c.id, c.items);
        }
    }
    for id in 100..300 {
        let mut c = Cart {
            id,
            items: 7,
            version: 0,
        };
        assert_eq!(carts.create(&mut c).await.unwrap(), WriteOutcome::Journaled);
        expected.insert(id, 7);
    }
    // Reads of written keys are served; an unknown key is Unavailable, never
    // a wrong answer.
    assert_eq!(carts.read(5u64).await.unwrap().unwrap().items, 14);
    assert_eq!(carts.read(150u64).await.unwrap().unwrap().items, 7);
    assert!(matches!(
        carts.read(9999u64).await,
        Err(Error::Unavailable { .. })
    ));
    assert_eq!(
        rows(&direct).await.get(&5),
        Some(&1),
        "MySQL has not seen the outage's writes"
    );
    let pending = plan1.stats().fallback.unwrap().pending;
    assert_eq!(pending, 300);

    // MySQL comes back, slowly (every packet delayed), so the restart below
    // happens in the middle of draining.
    proxy.set(Mode::Latency(Duration::from_millis(5))).await;
    eventually("draining to start", Duration::from_secs(20), async || {
        let left = plan1.stats().fallback.unwrap().pending;
        check(left < pending && left > 0, left)
    })
    .await;
    drop(carts);
    // A closed plan has let go of its journal.
    plan1.close().await.unwrap();
    drop(plan1);

    // The process restarts with entries still pending.
    let plan2 = plan(&store, &cache, dir.path()).await;
    let carts: Dao<Cart> = Dao::open(plan2.clone()).await.unwrap();
    let left = plan2.stats().fallback.unwrap().pending;
    assert!(left > 0, "the restart happened mid-drain");
    proxy.set(Mode::Pass).await;
    // New writes keep arriving while it drains.
    for c in all.iter_mut().take(10) {
        let mut current = carts.read(c.id).await.unwrap().unwrap();
        current.items = 99;
        carts.update(&mut current).await.unwrap();
        expected.insert(c.id, 99);
    }
    until_drained(&plan2, Duration::from_secs(20)).await;
    assert_eq!(
        rows(&direct).await,
        expected,
        "MySQL holds the last acknowledged write of every key"
    );
    assert_eq!(plan2.stats().fallback.unwrap().dead_letters, 0);
    let mut c = carts.read(1u64).await.unwrap().unwrap();
    c.items = 1000;
    assert_eq!(carts.update(&mut c).await.unwrap(), WriteOutcome::Primary);
}
