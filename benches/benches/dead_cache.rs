//! What a hanging cache costs reads: MySQL reads through a plan with no
//! cache, through a plan whose memcached level is blackholed by the fault
//! proxy while its breaker is still closed (each read pays the level's
//! deadline), and once the level's breaker is open (reads skip it). p50 and
//! p99 of each are printed for BENCHMARKS.md.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BenchRow, ROWS};
use criterion::{Criterion, criterion_group, criterion_main};
use fault_proxy::{FaultProxy, Mode};
use octopus::{BreakerState, Cache, CachePolicy, Dao, Model, Plan, Store};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::mysql::MysqlStore;

/// The memcached level's deadline.
const DEADLINE: Duration = Duration::from_millis(20);

fn dead_cache(c: &mut Criterion) {
    let rt = common::current_thread();
    let url = rt.block_on(common::fresh_database("dead_cache"));
    let (primary, remote, proxy) = rt.block_on(async {
        let primary: Arc<dyn Store> = Arc::new(MysqlStore::new(&url).unwrap());
        let rows: Vec<_> = (0..ROWS)
            .map(|id| BenchRow::new(id).to_record().unwrap())
            .collect();
        primary.ensure_schema(BenchRow::SCHEMA).await.unwrap();
        primary.upsert_many(BenchRow::SCHEMA, &rows).await.unwrap();
        let upstream = common::memcache_addr().parse().unwrap();
        let proxy = FaultProxy::start(upstream).await.unwrap();
        let options = MemcacheOptions::from_url(&format!("memcache://{}", proxy.addr()))
            .unwrap()
            .namespace("bench-dead-cache")
            .unwrap()
            .timeout(DEADLINE);
        let remote: Arc<dyn Cache> = Arc::new(MemcacheStore::with_options(options).await.unwrap());
        proxy.set(Mode::Blackhole).await;
        (primary, remote, proxy)
    });
    let plan = |cache: Option<&Arc<dyn Cache>>| {
        let mut b = Plan::builder(primary.clone());
        if let Some(c) = cache {
            b = b.cache(c.clone(), CachePolicy::Invalidate);
        }
        Dao::<BenchRow>::new(Arc::new(b.build().unwrap()))
    };
    let mysql_only = plan(None);
    let open = plan(Some(&remote));
    let k = AtomicU64::new(0);
    let next = || k.fetch_add(1, Ordering::Relaxed) % ROWS;
    let samples: [Mutex<Vec<Duration>>; 3] = Default::default();
    let mut g = c.benchmark_group("dead_cache/read");
    g.bench_function("mysql_no_cache", |b| {
        b.to_async(&rt).iter(|| async {
            let t = Instant::now();
            mysql_only.read(next()).await.unwrap().unwrap();
            samples[0].lock().unwrap().push(t.elapsed());
        })
    });
    // A fresh plan per read: its level's breaker is closed, so the read
    // waits for the level's deadline, then reads MySQL (and fills nothing).
    g.bench_function("memcached_blackholed_breaker_closed", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let samples = &samples[1];
            let plan = &plan;
            let next = &next;
            let remote = &remote;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dao = plan(Some(remote));
                    let t = Instant::now();
                    dao.read(next()).await.unwrap().unwrap();
                    let took = t.elapsed();
                    samples.lock().unwrap().push(took);
                    total += took;
                }
                total
            }
        })
    });
    // Reads until the level's breaker opens (each paying the deadline).
    rt.block_on(async {
        let mut i = 0;
        while open.plan().stats().levels[0].breaker.state != BreakerState::Open {
            open.read(i % ROWS).await.unwrap().unwrap();
            i += 1;
        }
    });
    g.bench_function("memcached_blackholed_breaker_open", |b| {
        b.to_async(&rt).iter(|| async {
            let t = Instant::now();
            open.read(next()).await.unwrap().unwrap();
            samples[2].lock().unwrap().push(t.elapsed());
        })
    });
    g.finish();
    assert_eq!(
        open.plan().stats().levels[0].breaker.state,
        BreakerState::Open,
        "the open-breaker figure was measured with the breaker open"
    );
    common::report("dead_cache/read/mysql_no_cache", &samples[0]);
    common::report(
        "dead_cache/read/memcached_blackholed_breaker_closed",
        &samples[1],
    );
    common::report(
        "dead_cache/read/memcached_blackholed_breaker_open",
        &samples[2],
    );
    println!("memcached deadline: {} us", DEADLINE.as_micros());
    rt.block_on(proxy.set(Mode::Pass));
}

criterion_group! {
    name = benches;
    config = common::criterion().sample_size(10);
    targets = dead_cache
}
criterion_main!(benches);
