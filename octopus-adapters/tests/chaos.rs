//! The chaos test: concurrent random creates, updates, deletes and reads over
//! a small key space, against MySQL (behind a fault proxy) + memcached (a
//! process this test starts and kills) + the in-process cache + the journal,
//! while a scheduler injects outages: MySQL refusing, blackholed and slow,
//! memcached killed and restarted, both at once, and an Octopus restart with
//! a non-empty journal. A reference model of acknowledged operations decides
//! what every read must return and what MySQL must hold at the end.
//!
//! `OCTOPUS_CHAOS_SECS` sets the length (default 15 s; the outage cycle
//! repeats until it has passed).
#![cfg(all(feature = "mysql", feature = "memcache"))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fault_proxy::{FaultProxy, Mode};
use mysql_async::prelude::Queryable;
use octopus::journal::{Journal, JournalOptions};
use octopus::{
    BreakerOptions, CachePolicy, Dao, Deletion, Error, MemoryOptions, MemoryStore, Model, Plan,
    WriteOutcome,
};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::memcache::OwnMemcached;
use octopus_test_support::mysql::{fresh_database, mysql_addr, url_via};
use octopus_test_support::{Rng, check, eventually};
use tokio::sync::{Mutex, RwLock};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "chaos_items")]
struct Item {
    #[octopus(key)]
    id: u64,
    value: u64,
    #[octopus(version)]
    version: u64,
}

const KEYS: u64 = 40;
const WORKERS: usize = 6;
/// Deadlines: MySQL calls, memcached calls.
const MYSQL_DEADLINE_MS: u64 = 500;
const MEMCACHE_TIMEOUT_MS: u64 = 150;
/// The longest a Dao call may take: a primary call, two memcached calls
/// (lookup and fill, or invalidate), plus a stated slack for the journal's
/// fsync and scheduling on a loaded 2-core machine.
const CALL_BOUND_MS: u64 = MYSQL_DEADLINE_MS + 2 * MEMCACHE_TIMEOUT_MS + 1200;

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    journaled: AtomicU64,
    stale_reads: AtomicU64,
    unserved_reads: AtomicU64,
    unavailable_reads: AtomicU64,
    unexpected: AtomicU64,
    slow_calls: AtomicU64,
    max_call_ms: AtomicU64,
}

/// The reference: the last acknowledged state of each key, and whether
/// that write was journaled.
#[derive(Clone, Default)]
struct Slot {
    item: Option<Item>,
    journaled: bool,
}

struct World {
    proxy: FaultProxy,
    memcached: Mutex<OwnMemcached>,
    mysql: Arc<MysqlStore>,
    memcache: Arc<MemcacheStore>,
    journal_dir: tempfile::TempDir,
    direct_url: String,
}

impl World {
    async fn plan(&self) -> Arc<Plan> {
        // The previous plan was closed: its journal's lock is free.
        let journal = Journal::open(self.journal_dir.path(), JournalOptions::default());
        Arc::new(
            Plan::builder(self.mysql.clone())
                .cache(
                    Arc::new(MemoryStore::with_options(
                        MemoryOptions::new().capacity(1000),
                    )),
                    CachePolicy::Invalidate,
                )
                .cache(self.memcache.clone(), CachePolicy::Invalidate)
                .breaker(BreakerOptions {
                    window: 10,
                    minimum_calls: 4,
                    failure_rate: 0.5,
                    slow_call_duration: Duration::from_millis(400),
                    slow_call_rate: 0.8,
                    open_wait: Duration::from_millis(400),
                    half_open_calls: 2,
                    half_open_max_wait: Duration::from_secs(2),
                })
                .herd_wait(Duration::from_millis(MYSQL_DEADLINE_MS + 100))
                .journal(journal.expect("the journal reopens"))
                .build()
                .unwrap(),
        )
    }
}

struct App {
    plan: Arc<Plan>,
    items: Dao<Item>,
}

async fn worker(
    seed: u64,
    app: Arc<RwLock<App>>,
    reference: Arc<Vec<Mutex<Slot>>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::SeqCst) {
        let id = rng.below(KEYS);
        let mut slot = reference[id as usize].lock().await;
        let app = app.read().await;
        let choice = rng.below(100);
        let started = Instant::now();
        let outcome: Result<(), Error> = async {
            if choice < 45 {
                match app.items.read(id).await {
                    Ok(got) => {
                        if got != slot.item {
                            counters.stale_reads.fetch_add(1, Ordering::SeqCst);
                            eprintln!(
                                "stale read of {id}: got {got:?}, acknowledged {:?}",
                                slot.item
                            );
                        }
                    }
                    Err(e) if e.is_unavailable() => {
                        counters.unavailable_reads.fetch_add(1, Ordering::SeqCst);
                        // A key whose write is still pending must be served.
                        let pending = app
                            .plan
                            .fallback()
                            .pending(Item::SCHEMA, &id.into())
                            .await?;
                        if slot.journaled && pending.is_some() {
                            counters.unserved_reads.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(e) => return Err(e),
                }
                return Ok(());
            }
            let outcome = match slot.item.clone() {
                None => {
                    let mut item = Item {
                        id,
                        value: rng.below(1_000_000),
                        version: 0,
                    };
                    let out = app.items.create(&mut item).await?;
                    slot.item = Some(item);
                    out
                }
                Some(_) if choice < 60 => {
                    let out = app.items.delete(id).await?;
                    slot.item = None;
                    match out {
                        Deletion::Journaled => WriteOutcome::Journaled,
                        _ => WriteOutcome::Primary,
                    }
                }
                Some(mut item) => {
                    item.value = rng.below(1_000_000);
                    let out = app.items.update(&mut item).await?;
                    slot.item = Some(item);
                    out
                }
            };
            slot.journaled = outcome == WriteOutcome::Journaled;
            if slot.journaled {
                counters.journaled.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
        .await;
        let ms = started.elapsed().as_millis() as u64;
        counters.max_call_ms.fetch_max(ms, Ordering::SeqCst);
        if ms > CALL_BOUND_MS {
            counters.slow_calls.fetch_add(1, Ordering::SeqCst);
            eprintln!("call on key {id} took {ms} ms");
        }
        counters.ops.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = outcome {
            counters.unexpected.fetch_add(1, Ordering::SeqCst);
            eprintln!("unexpected error on key {id}: {e:?}");
        }
        drop(app);
        drop(slot);
        tokio::task::yield_now().await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Outage {
    MysqlRefuse,
    MysqlBlackhole,
    MysqlSlow,
    MemcachedKilled,
    Both,
    OctopusRestart,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos() {
    let secs: u64 = std::env::var("OCTOPUS_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let direct_url = fresh_database("chaos").await;
    let proxy = FaultProxy::start(mysql_addr()).await.unwrap();
    let params = format!("deadline_ms={MYSQL_DEADLINE_MS}&pool_size=8");
    let mysql = Arc::new(MysqlStore::new(&url_via(&direct_url, proxy.addr(), &params)).unwrap());
    let memcached = OwnMemcached::start().await;
    let memcache = Arc::new(
        MemcacheStore::with_options(
            MemcacheOptions::from_url(&memcached.url())
                .unwrap()
                .timeout(Duration::from_millis(MEMCACHE_TIMEOUT_MS))
                .connect_timeout(Duration::from_millis(MEMCACHE_TIMEOUT_MS)),
        )
        .await
        .unwrap(),
    );
    let world = Arc::new(World {
        proxy,
        memcached: Mutex::new(memcached),
        mysql,
        memcache,
        journal_dir: tempfile::tempdir().unwrap(),
        direct_url,
    });

    let plan = world.plan().await;
    let items: Dao<Item> = Dao::open(plan.clone()).await.unwrap();
    // The proxy is really in the path: refusing makes calls fail.
    items.read(0u64).await.unwrap();
    assert!(world.proxy.connections() > 0);
    let app = Arc::new(RwLock::new(App { plan, items }));
    let reference: Arc<Vec<Mutex<Slot>>> =
        Arc::new((0..KEYS).map(|_| Mutex::new(Slot::default())).collect());
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let seed = Rng::clock_seed();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            tokio::spawn(worker(
                seed.wrapping_mul(w as u64 + 7) | 1,
                app.clone(),
                reference.clone(),
                counters.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let schedule = [
        Outage::MysqlRefuse,
        Outage::MemcachedKilled,
        Outage::MysqlBlackhole,
        Outage::OctopusRestart,
        Outage::MysqlSlow,
        Outage::Both,
    ];
    let start = Instant::now();
    let mut outages = 0u64;
    let mut replayed = 0u64;
    let mut cycle = 0;
    while cycle == 0 || start.elapsed() < Duration::from_secs(secs) {
        for outage in schedule {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            outages += 1;
            match outage {
                Outage::MysqlRefuse => {
                    world.proxy.set(Mode::Reset).await;
                    world.proxy.set(Mode::Refuse).await;
                }
                Outage::MysqlBlackhole => world.proxy.set(Mode::Blackhole).await,
                Outage::MysqlSlow => {
                    world
                        .proxy
                        .set(Mode::Latency(Duration::from_millis(120)))
                        .await
                }
                Outage::MemcachedKilled => world.memcached.lock().await.stop(),
                Outage::Both => {
                    world.proxy.set(Mode::Reset).await;
                    world.proxy.set(Mode::Refuse).await;
                    world.memcached.lock().await.stop();
                }
                Outage::OctopusRestart => {
                    // Take MySQL away so the journal is not empty, then
                    // restart Octopus: drop the plan, reopen everything.
                    world.proxy.set(Mode::Reset).await;
                    world.proxy.set(Mode::Refuse).await;
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    let mut guard = app.write().await;
                    replayed += guard.plan.stats().fallback.unwrap().replayed;
                    let pending_before = guard.plan.stats().fallback.unwrap().pending;
                    let old = std::mem::replace(&mut *guard, {
                        // Placeholder while the old plan lets go of the journal.
                        let p = Arc::new(Plan::new(MemoryStore::new()));
                        App {
                            items: Dao::new(p.clone()),
                            plan: p,
                        }
                    });
                    old.plan.close().await.unwrap();
                    drop(old);
                    let plan = world.plan().await;
                    assert_eq!(
                        plan.stats().fallback.unwrap().pending,
                        pending_before,
                        "the restart kept every pending entry"
                    );
                    let items = Dao::open(plan.clone()).await.unwrap();
                    *guard = App { plan, items };
                }
            }
            tokio::time::sleep(Duration::from_millis(2000)).await;
            world.proxy.set(Mode::Pass).await;
            {
                let mut m = world.memcached.lock().await;
                if !m.is_running() {
                    m.restart().await;
                }
            }
        }
        cycle += 1;
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }

    // Everything is back: the journal drains and MySQL matches the reference.
    let plan = app.read().await.plan.clone();
    let drain_started = Instant::now();
    let pending_at_end = plan.stats().fallback.unwrap().pending;
    let what = "the journal to drain after the last outage";
    eventually(what, Duration::from_secs(60), async || {
        let stats = plan.stats();
        check(stats.fallback.as_ref().unwrap().pending == 0, stats)
    })
    .await;
    replayed += plan.stats().fallback.unwrap().replayed;
    println!(
        "chaos: schedule took {} ms; final drain of {pending_at_end} entries took {} ms",
        (drain_started - start).as_millis(),
        drain_started.elapsed().as_millis()
    );
    let mut conn = mysql_async::Conn::from_url(&world.direct_url)
        .await
        .unwrap();
    let rows: Vec<(u64, u64, u64)> = conn
        .query("SELECT id, value, version FROM chaos_items")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let stored: BTreeMap<u64, (u64, u64)> = rows
        .into_iter()
        .map(|(id, v, ver)| (id, (v, ver)))
        .collect();
    let mut lost = 0;
    let mut resurrected = 0;
    for id in 0..KEYS {
        let want = reference[id as usize]
            .lock()
            .await
            .item
            .clone()
            .map(|i| (i.value, i.version));
        let have = stored.get(&id).copied();
        if want != have {
            eprintln!("key {id}: acknowledged {want:?}, MySQL holds {have:?}");
            if want.is_none() {
                resurrected += 1;
            } else {
                lost += 1;
            }
        }
    }
    let c = &counters;
    println!(
        "chaos: ops={} outages={outages} journaled={} replayed={replayed} lost={lost} stale_reads={} max_call_ms={}",
        c.ops.load(Ordering::SeqCst),
        c.journaled.load(Ordering::SeqCst),
        c.stale_reads.load(Ordering::SeqCst),
        c.max_call_ms.load(Ordering::SeqCst),
    );
    println!(
        "chaos: resurrected={resurrected} unavailable_reads={} unserved_reads={} unexpected_errors={} calls_over_{CALL_BOUND_MS}ms={}",
        c.unavailable_reads.load(Ordering::SeqCst),
        c.unserved_reads.load(Ordering::SeqCst),
        c.unexpected.load(Ordering::SeqCst),
        c.slow_calls.load(Ordering::SeqCst),
    );
    assert_eq!(lost, 0, "acknowledged writes lost");
    assert_eq!(resurrected, 0, "deleted rows came back");
    assert_eq!(
        c.stale_reads.load(Ordering::SeqCst),
        0,
        "reads returned a value other than the last acknowledged one"
    );
    assert_eq!(
        c.unserved_reads.load(Ordering::SeqCst),
        0,
        "reads of pending writes failed"
    );
    assert_eq!(
        c.unexpected.load(Ordering::SeqCst),
        0,
        "errors of an unexpected kind"
    );
    assert_eq!(
        c.slow_calls.load(Ordering::SeqCst),
        0,
        "calls ran past their deadline plus slack"
    );
    assert!(
        c.journaled.load(Ordering::SeqCst) > 0 && replayed > 0,
        "the outages were felt"
    );
}
