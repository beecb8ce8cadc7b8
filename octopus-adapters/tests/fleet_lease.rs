//! Servers with in-process caches over one MySQL and one memcached: three
//! plans (each its own in-process cache, memcached client and MySQL pool,
//! as three servers have), three tasks each, reading and updating four hot
//! keys with no lock around an operation. Every operation is recorded and
//! the history checked per key: with a fleet lease no read returns a row
//! older than a write acknowledged (by any server) before the read began;
//! without one, the in-process caches serve rows other servers overwrote,
//! and the checker sees it.
#![cfg(all(feature = "mysql", feature = "memcache"))]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use octopus::{
    Cache, CachePolicy, Dao, Error, Lookup, MemoryOptions, MemoryStore, Model, Plan, PlanBuilder,
    Store,
};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::Rng;
use octopus_test_support::history::{self, Op, Outcome, Record};
use octopus_test_support::memcache::{fresh_namespace, memcache_addr, memcache_url};
use octopus_test_support::mysql::{fresh_database, mysql_addr, url_via};
use octopus_test_support::{check, eventually};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "fleet_items")]
struct Item {
    #[octopus(key)]
    id: u64,
    value: i64,
    #[octopus(version)]
    version: u64,
}

const SERVERS: u64 = 3;
const TASKS: u64 = 3;
const KEYS: u64 = 4;
const OPS: u64 = 80;

/// The history, on one logical clock.
#[derive(Default)]
struct Recorder {
    clock: AtomicU64,
    records: Mutex<Vec<Record>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    fn push(&self, client: String, key: u64, op: Op, outcome: Outcome, invoked: u64) {
        let completed = self.now();
        self.records.lock().unwrap().push(Record {
            client,
            key,
            op,
            outcome,
            invoked,
            completed,
        });
    }
}

/// One server's plan: MySQL, then its in-process cache, then memcached.
async fn server(mysql: &str, namespace: &str, lease: Option<Duration>) -> Dao<Item> {
    let memcached = MemcacheOptions::from_url(&memcache_url())
        .unwrap()
        .namespace(namespace)
        .unwrap();
    let mut plan = Plan::builder(Arc::new(MysqlStore::new(mysql).unwrap()))
        .cache(
            Arc::new(MemoryStore::with_options(
                MemoryOptions::new().capacity(100),
            )),
            CachePolicy::Invalidate,
        )
        .cache(
            Arc::new(MemcacheStore::with_options(memcached).await.unwrap()),
            CachePolicy::Invalidate,
        );
    if let Some(lease) = lease {
        plan = plan.fleet_lease(lease);
    }
    Dao::open(Arc::new(plan.build().unwrap())).await.unwrap()
}

/// One task: reads, and updates built on its reads, of the hot keys.
async fn task(dao: Dao<Item>, client: String, seed: u64, recorder: Arc<Recorder>) {
    let mut rng = Rng::new(seed);
    for n in 0..OPS {
        let key = rng.below(KEYS);
        let invoked = recorder.now();
        let read = dao.read(key).await.unwrap();
        let value = read.as_ref().map(|item| item.value);
        recorder.push(client.clone(), key, Op::Read(value), Outcome::Ok, invoked);
        let Some(mut item) = read.filter(|_| rng.chance(50)) else {
            continue;
        };
        let built_on = item.value;
        item.value = ((seed as i64) << 20) | n as i64;
        let invoked = recorder.now();
        match dao.update(&mut item).await {
            Ok(_) => recorder.push(
                client.clone(),
                key,
                Op::Put(item.value),
                Outcome::Ok,
                invoked,
            ),
            Err(Error::Conflict { .. }) => recorder.push(
                client.clone(),
                key,
                Op::Changed(built_on),
                Outcome::Refused,
                invoked,
            ),
            Err(e) => panic!("{client}: update of key {key}: {e}"),
        }
    }
}

/// Runs the workload with `lease` and returns the history's violations.
async fn run(name: &str, lease: Option<Duration>) -> Vec<history::Violation> {
    let mysql = fresh_database(name).await;
    let namespace = fresh_namespace(name);
    let seed_store = MysqlStore::new(&mysql).unwrap();
    seed_store.ensure_schema(Item::SCHEMA).await.unwrap();
    let mut initial = BTreeMap::new();
    for id in 0..KEYS {
        let row = Item {
            id,
            value: 0,
            version: 1,
        };
        seed_store
            .insert(Item::SCHEMA, &row.to_record().unwrap())
            .await
            .unwrap();
        initial.insert(id, Some(0));
    }
    let recorder = Arc::new(Recorder::default());
    let mut tasks = Vec::new();
    for s in 0..SERVERS {
        let dao = server(&mysql, &namespace, lease).await;
        for t in 0..TASKS {
            tasks.push(tokio::spawn(task(
                dao.clone(),
                format!("server {s} task {t}"),
                s * TASKS + t + 1,
                recorder.clone(),
            )));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut last = BTreeMap::new();
    for id in 0..KEYS {
        let row = seed_store.get(Item::SCHEMA, &id.into()).await.unwrap();
        let value = row.map(|r| Item::from_record(r).unwrap().value);
        last.insert(id, value);
    }
    let records = recorder.records.lock().unwrap().clone();
    history::check(&records, &initial, &last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fleet_lease_no_server_reads_a_row_another_overwrote() {
    let violations = run("fleet_lease", Some(Duration::from_millis(20))).await;
    assert!(
        violations.is_empty(),
        "{} violations, the first: {:#?}",
        violations.len(),
        violations.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_lease_in_process_caches_serve_rows_other_servers_overwrote() {
    let violations = run("fleet_no_lease", None).await;
    assert!(
        violations.iter().any(|v| v.rule == "stale"),
        "the in-process caches never served an overwritten row: the workload no longer overlaps \
         servers on a key ({} violations)",
        violations.len()
    );
}

/// A plan over MySQL at `url` with `caches` in read order and a lease.
fn plan_over(
    url: &str, caches: Vec<(Arc<dyn Cache>, CachePolicy)>, lease: Duration,
) -> PlanBuilder {
    let mut plan = Plan::builder(Arc::new(MysqlStore::new(url).unwrap())).fleet_lease(lease);
    for (cache, policy) in caches {
        plan = plan.cache(cache, policy);
    }
    plan
}

fn local() -> Arc<dyn Cache> {
    Arc::new(MemoryStore::new())
}

async fn shared(namespace: &str) -> Arc<dyn Cache> {
    let options = MemcacheOptions::from_url(&memcache_url())
        .unwrap()
        .namespace(namespace)
        .unwrap();
    Arc::new(MemcacheStore::with_options(options).await.unwrap())
}

fn item(value: i64) -> Item {
    Item {
        id: 1,
        value,
        version: 0,
    }
}

/// Levels in the other order (memcached, then the in-process cache): a
/// server whose in-process cache still holds the old row while another
/// server's write waits out its lease must not write that row back into
/// memcached over the writer's marker, where every server would read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_hit_never_writes_its_row_over_another_servers_marker() {
    let mysql = fresh_database("fleet_local_hit").await;
    let namespace = fresh_namespace("fleet_local_hit");
    let memcached = shared(&namespace).await;
    let server = async |lease| {
        let levels = vec![
            (memcached.clone(), CachePolicy::Invalidate),
            (local(), CachePolicy::Invalidate),
        ];
        Dao::<Item>::open(Arc::new(plan_over(&mysql, levels, lease).build().unwrap()))
            .await
            .unwrap()
    };
    let lease = Duration::from_millis(500);
    let (a, b, c) = (
        server(lease).await,
        server(lease).await,
        server(lease).await,
    );
    let mut row = item(1);
    a.create(&mut row).await.unwrap();
    assert_eq!(b.read(1u64).await.unwrap().map(|i| i.value), Some(1));
    row.value = 2;
    let write = tokio::spawn(async move { a.update(&mut row).await.unwrap() });
    // A's write invalidated memcached and waits out its lease: B reads
    // now (memcached misses on the marker, B's in-process cache hits).
    eventually(
        "A's marker in memcached",
        Duration::from_secs(10),
        async || {
            let found = memcached.lookup(Item::SCHEMA, &1u64.into()).await.unwrap();
            check(matches!(found, Lookup::Miss(_)), found)
        },
    )
    .await;
    assert_eq!(
        b.read(1u64).await.unwrap().map(|i| i.value),
        Some(1),
        "B's own row, within its lease"
    );
    write.await.unwrap();
    assert_eq!(
        c.read(1u64).await.unwrap().map(|i| i.value),
        Some(2),
        "a row older than A's acknowledged write, from memcached"
    );
}

/// Stale-if-error under a lease serves no in-process row: past its lease
/// such a row may be one another server overwrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_lease_stale_if_error_serves_no_row_another_server_overwrote() {
    let mysql = fresh_database("fleet_stale").await;
    let proxy = FaultProxy::start(mysql_addr()).await.unwrap();
    let lease = Duration::from_millis(20);
    let a = Dao::<Item>::open(Arc::new(
        plan_over(&mysql, vec![(local(), CachePolicy::Invalidate)], lease)
            .build()
            .unwrap(),
    ))
    .await
    .unwrap();
    let keeps_stale =
        MemoryStore::with_options(MemoryOptions::new().stale_for(Duration::from_secs(600)));
    let b = Dao::<Item>::open(Arc::new(
        plan_over(
            &url_via(&mysql, proxy.addr(), "deadline_ms=300"),
            vec![(Arc::new(keeps_stale), CachePolicy::Invalidate)],
            lease,
        )
        .stale_if_error(true)
        .build()
        .unwrap(),
    ))
    .await
    .unwrap();
    let mut row = item(1);
    a.create(&mut row).await.unwrap();
    assert_eq!(b.read(1u64).await.unwrap().map(|i| i.value), Some(1));
    row.value = 2;
    a.update(&mut row).await.unwrap();
    proxy.set(Mode::Reset).await;
    proxy.set(Mode::Refuse).await;
    let err = b.read(1u64).await.unwrap_err();
    assert!(err.is_unavailable(), "B served a row A overwrote: {err:?}");
}

/// A server's own write-through row is anchored before its write was sent:
/// a write whose answer comes back late (after another server's later
/// write was acknowledged) never leaves its older row readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_never_makes_an_older_own_row_readable() {
    let mysql = fresh_database("fleet_late_answer").await;
    let proxy = FaultProxy::start(mysql_addr()).await.unwrap();
    let lease = Duration::from_millis(200);
    let unversioned = |url: &str| {
        plan_over(url, vec![(local(), CachePolicy::WriteThrough)], lease)
            .build()
            .unwrap()
    };
    let a = Dao::<Plain>::open(Arc::new(unversioned(&url_via(
        &mysql,
        proxy.addr(),
        "deadline_ms=5000",
    ))))
    .await
    .unwrap();
    let b = Dao::<Plain>::open(Arc::new(unversioned(&mysql)))
        .await
        .unwrap();
    b.create(&mut Plain { id: 1, value: 1 }).await.unwrap();
    // A's update reaches MySQL 400 ms after it is sent, and its answer
    // comes back 400 ms after that.
    proxy.set(Mode::Latency(Duration::from_millis(400))).await;
    let writer = a.clone();
    let write = tokio::spawn(async move {
        writer
            .update(&mut Plain { id: 1, value: 10 })
            .await
            .unwrap()
    });
    let direct = MysqlStore::new(&mysql).unwrap();
    eventually(
        "A's update committed",
        Duration::from_secs(10),
        async || {
            let row = direct.get(Plain::SCHEMA, &1u64.into()).await.unwrap();
            let value = row.map(|r| Plain::from_record(r).unwrap().value);
            check(value == Some(10), value)
        },
    )
    .await;
    b.update(&mut Plain { id: 1, value: 20 }).await.unwrap();
    // Every read on A from now on began after B's write was acknowledged.
    proxy.set(Mode::Pass).await;
    let mut seen = Vec::new();
    while !write.is_finished() {
        seen.push(a.read(1u64).await.unwrap().map(|p| p.value));
        tokio::task::yield_now().await;
    }
    write.await.unwrap();
    seen.push(a.read(1u64).await.unwrap().map(|p| p.value));
    assert!(
        seen.iter().all(|v| *v == Some(20)),
        "A read its older row after B's write was acknowledged: {seen:?}"
    );
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "fleet_plain")]
struct Plain {
    #[octopus(key)]
    id: u64,
    value: i64,
}

/// memcached as one server reaches it, through a proxy of its own.
async fn shared_via(proxy: &FaultProxy, namespace: &str) -> Arc<dyn Cache> {
    let options = MemcacheOptions::from_url(&format!("memcache://{}", proxy.addr()))
        .unwrap()
        .namespace(namespace)
        .unwrap()
        .timeout(Duration::from_millis(100));
    Arc::new(MemcacheStore::with_options(options).await.unwrap())
}

/// Server B was cut off from memcached (its breaker for it opened, its
/// retry queue backed off); memcached comes back with its rows. B's
/// breaker is still open, so B's next write skips its invalidation; server
/// A already reads memcached again. Under a lease, B's write reaches
/// memcached once more before it is acknowledged, so A never reads the
/// row B overwrote from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_breaker_skipped_memcached_still_invalidates_it_before_its_ack() {
    let mysql = fresh_database("fleet_skipped").await;
    let namespace = fresh_namespace("fleet_skipped");
    let (to_a, to_b) = (
        FaultProxy::start(memcache_addr()).await.unwrap(),
        FaultProxy::start(memcache_addr()).await.unwrap(),
    );
    let lease = Duration::from_millis(100);
    let slow_to_close = octopus::BreakerOptions {
        open_wait: Duration::from_secs(600),
        ..octopus::BreakerOptions::default()
    };
    let server = async |proxy: &FaultProxy| {
        let levels = vec![(shared_via(proxy, &namespace).await, CachePolicy::Invalidate)];
        let plan = plan_over(&mysql, levels, lease)
            .cache_breaker(slow_to_close.clone())
            .build()
            .unwrap();
        Dao::<Item>::open(Arc::new(plan)).await.unwrap()
    };
    let (a, b) = (server(&to_a).await, server(&to_b).await);
    for id in [1, 2] {
        a.create(&mut Item {
            id,
            value: 1,
            version: 0,
        })
        .await
        .unwrap();
    }
    // B loses memcached: its writes' invalidations fail and queue, their
    // retries back off, and its breaker for memcached opens.
    to_b.set(Mode::Blackhole).await;
    let mut other = b.read(2u64).await.unwrap().unwrap();
    eventually(
        "B's breaker for memcached open, its retries backed off",
        Duration::from_secs(30),
        async || {
            other.value += 1;
            b.update(&mut other).await.unwrap();
            let stats = b.plan().stats();
            check(
                stats.levels[0].breaker.state == octopus::BreakerState::Open
                    && stats.invalidation_retries >= 5,
                stats,
            )
        },
    )
    .await;
    to_b.set(Mode::Reset).await;
    to_b.set(Mode::Pass).await;
    // memcached holds row 1 (A reads it there), B's breaker still open.
    assert_eq!(a.read(1u64).await.unwrap().map(|i| i.value), Some(1));
    assert_eq!(a.read(1u64).await.unwrap().map(|i| i.value), Some(1));
    assert!(
        a.plan().stats().levels[0].hits >= 1,
        "A reads row 1 from memcached"
    );
    let mut row = b.read(1u64).await.unwrap().unwrap();
    row.value = 2;
    b.update(&mut row).await.unwrap();
    assert_eq!(
        a.read(1u64).await.unwrap().map(|i| i.value),
        Some(2),
        "A read from memcached the row B's acknowledged write replaced"
    );
}
