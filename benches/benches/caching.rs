//! Read-through: a row served by the in-process cache, by memcached, and by
//! MySQL, all through `Dao::read`, as speedups over the MySQL read.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{BenchRow, ROWS};
use criterion::{Criterion, criterion_group, criterion_main};
use octopus::{CachePolicy, Dao, MemoryStore, Model, Plan, Store};
use octopus_adapters::memcache::MemcacheStore;
use octopus_adapters::mysql::MysqlStore;

fn read_through(c: &mut Criterion) {
    let rt = common::current_thread();
    let url = rt.block_on(common::fresh_database("caching"));
    let (mysql_only, memcached, memory) = rt.block_on(async {
        let primary = Arc::new(MysqlStore::new(&url).unwrap());
        let rows: Vec<_> = (0..ROWS)
            .map(|id| BenchRow::new(id).to_record().unwrap())
            .collect();
        primary.ensure_schema(BenchRow::SCHEMA).await.unwrap();
        primary.upsert_many(BenchRow::SCHEMA, &rows).await.unwrap();
        let remote = Arc::new(
            MemcacheStore::connect(&format!(
                "memcache://{}?namespace=bench-caching-{}",
                common::memcache_addr(),
                std::process::id()
            ))
            .await
            .unwrap(),
        );
        let plan = |cache: Option<Arc<dyn octopus::Cache>>| {
            let mut b = Plan::builder(primary.clone());
            if let Some(c) = cache {
                b = b.cache(c, CachePolicy::Invalidate);
            }
            Dao::<BenchRow>::new(Arc::new(b.build().unwrap()))
        };
        let mysql_only = plan(None);
        let memcached = plan(Some(remote));
        let memory = plan(Some(Arc::new(MemoryStore::new())));
        // Warm both caches with every row.
        for id in 0..ROWS {
            memcached.read(id).await.unwrap();
            memory.read(id).await.unwrap();
        }
        (mysql_only, memcached, memory)
    });
    let k = AtomicU64::new(0);
    let next = || k.fetch_add(1, Ordering::Relaxed) % ROWS;
    let mut g = c.benchmark_group("read_through");
    g.bench_function("mysql", |b| {
        b.to_async(&rt)
            .iter(|| async { mysql_only.read(next()).await.unwrap().unwrap() })
    });
    g.bench_function("memcached_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { memcached.read(next()).await.unwrap().unwrap() })
    });
    g.bench_function("memory_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { memory.read(next()).await.unwrap().unwrap() })
    });
    g.finish();
    for (name, dao) in [("memory", &memory), ("memcached", &memcached)] {
        let level = &dao.plan().stats().levels[0];
        assert!(
            level.hits > 0 && level.misses == ROWS,
            "the {name} benchmark was served by the cache ({} hits; {} misses, the warm-up alone makes {ROWS})",
            level.hits,
            level.misses
        );
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = read_through
}
criterion_main!(benches);
