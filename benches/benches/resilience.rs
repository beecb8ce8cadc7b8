//! The cost of resilience: write latency while the breaker is open and the
//! journal takes writes, the time an outage takes to open the breaker,
//! journal append throughput beside a minimal group commit, and Dao
//! throughput as concurrency grows (no global lock serialises it) beside
//! the raw drivers doing the same work. Every update changes its row.
//! Replay is measured in `replay.rs`.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BenchRow, ROWS};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fault_proxy::{FaultProxy, Mode};
use mysql_async::prelude::Queryable;
use octopus::journal::{Journal, JournalOptions};
use octopus::{
    BreakerOptions, BreakerState, CachePolicy, Dao, Model, Plan, Store, Value, Write, WriteOutcome,
};
use octopus_adapters::memcache::MemcacheStore;
use octopus_adapters::mysql::MysqlStore;

fn server() -> std::net::SocketAddr {
    let opts = mysql_async::Opts::from_url(&common::mysql_url()).unwrap();
    format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
        .parse()
        .unwrap()
}

/// Healthy MySQL writes against writes while MySQL is down (breaker open,
/// journal with fsync taking them).
fn outage(c: &mut Criterion) {
    let rt = common::current_thread();
    let url = rt.block_on(common::fresh_database("outage"));
    let db = url.rsplit_once('/').unwrap().1.to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (proxy, dao) = rt.block_on(async {
        let proxy = FaultProxy::start(server()).await.unwrap();
        let store = MysqlStore::new(&format!(
            "mysql://root@{}/{db}?deadline_ms=500",
            proxy.addr()
        ))
        .unwrap();
        let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        let plan = Plan::builder(Arc::new(store))
            .journal(journal)
            .build()
            .unwrap();
        let dao: Dao<BenchRow> = Dao::open(Arc::new(plan)).await.unwrap();
        for id in 0..1000 {
            dao.create(&mut BenchRow::new(id)).await.unwrap();
        }
        (proxy, dao)
    });
    // Every update changes the row (a new `value`), on both sides: InnoDB
    // commits an update that changes nothing without flushing its redo
    // log, which is not the write the names promise.
    let k = AtomicU64::new(0);
    let v = AtomicU64::new(common::FIRST_VALUE);
    let raw_samples = Mutex::new(Vec::new());
    let healthy = Mutex::new(Vec::new());
    let journaled = Mutex::new(Vec::new());
    let mut g = c.benchmark_group("outage/update");
    // The raw driver on the same path (through the fault proxy, passing),
    // the same statement Octopus sends for an update.
    let raw = common::raw_mysql_pool(&format!("mysql://root@{}/{db}", proxy.addr()));
    g.bench_function("mysql_async_healthy", |b| {
        b.to_async(&rt).iter(|| async {
            let row = BenchRow::with_value(
                k.fetch_add(1, Ordering::Relaxed) % 1000,
                common::next_value(&v),
            );
            let t = Instant::now();
            let mut conn = raw.get_conn().await.unwrap();
            conn.exec_drop(
                "UPDATE bench_rows SET name = ?, value = ? WHERE id = ?",
                (row.name, row.value, row.id),
            )
            .await
            .unwrap();
            assert_eq!(conn.affected_rows(), 1, "the update changed the row");
            drop(conn);
            raw_samples.lock().unwrap().push(t.elapsed());
        })
    });
    rt.block_on(raw.disconnect()).unwrap();
    g.bench_function("mysql_healthy", |b| {
        b.to_async(&rt).iter(|| async {
            let mut row = BenchRow::with_value(
                k.fetch_add(1, Ordering::Relaxed) % 1000,
                common::next_value(&v),
            );
            let t = Instant::now();
            assert_eq!(dao.update(&mut row).await.unwrap(), WriteOutcome::Primary);
            healthy.lock().unwrap().push(t.elapsed());
        })
    });
    rt.block_on(async {
        proxy.set(Mode::Reset).await;
        proxy.set(Mode::Refuse).await;
        // Open the breaker with writes that fail on the primary: each of
        // a key with nothing pending goes through the breaker (the
        // replayer probes the primary directly, so it never opens it).
        let mut id = 0;
        while dao.plan().breaker().state() != BreakerState::Open {
            assert!(id < 1000, "the write breaker opened within 1000 writes");
            let mut row = BenchRow::with_value(id, common::next_value(&v));
            assert_eq!(dao.update(&mut row).await.unwrap(), WriteOutcome::Journaled);
            id += 1;
        }
    });
    g.bench_function("journaled_breaker_open", |b| {
        b.to_async(&rt).iter(|| async {
            let mut row = BenchRow::with_value(
                k.fetch_add(1, Ordering::Relaxed) % 1000,
                common::next_value(&v),
            );
            let t = Instant::now();
            assert_eq!(dao.update(&mut row).await.unwrap(), WriteOutcome::Journaled);
            journaled.lock().unwrap().push(t.elapsed());
        })
    });
    g.finish();
    common::report("outage/update/mysql_async_healthy", &raw_samples);
    common::report("outage/update/mysql_healthy", &healthy);
    common::report("outage/update/journaled_breaker_open", &journaled);
    // MySQL back: drain what was journaled and stop the replayer before the
    // next measurement, which it would otherwise share MySQL with.
    rt.block_on(async {
        proxy.set(Mode::Pass).await;
        dao.plan().drained().await;
        dao.plan().close().await.unwrap();
    });
    drop(dao);

    // Time from the outage's start to the reads' breaker opening, under a
    // steady read load on uncached keys (default breaker settings).
    let mut to_open = Vec::new();
    let mut to_journal = Vec::new();
    for round in 0..5 {
        let (open, first_journaled) = rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = MysqlStore::new(&format!(
                "mysql://root@{}/{db}?deadline_ms=500",
                proxy.addr()
            ))
            .unwrap();
            let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
            let plan = Arc::new(
                Plan::builder(Arc::new(store))
                    .breaker(BreakerOptions::default())
                    .journal(journal)
                    .build()
                    .unwrap(),
            );
            let dao: Dao<BenchRow> = Dao::open(plan.clone()).await.unwrap();
            dao.read(1u64).await.unwrap();
            proxy.set(Mode::Reset).await;
            proxy.set(Mode::Refuse).await;
            let start = Instant::now();
            let mut row = BenchRow::new(10_000 + round);
            assert_eq!(dao.create(&mut row).await.unwrap(), WriteOutcome::Journaled);
            let first = start.elapsed();
            let mut i = 0u64;
            while plan.read_breaker().state() != BreakerState::Open {
                let _ = dao.read(i % 1000).await;
                i += 1;
            }
            let open = start.elapsed();
            proxy.set(Mode::Pass).await;
            plan.drained().await;
            (open, first)
        });
        to_open.push(open);
        to_journal.push(first_journaled);
    }
    to_open.sort();
    to_journal.sort();
    println!(
        "outage/time_to_first_journaled_write: median {:.2} ms; outage/time_to_read_breaker_open: median {:.2} ms (5 outages)",
        to_journal[2].as_secs_f64() * 1e3,
        to_open[2].as_secs_f64() * 1e3
    );
}

/// Durable (fsync) appends per second with 1, 8 and 64 concurrent writers.
fn journal_appends(c: &mut Criterion) {
    let rt = common::multi_thread();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let record = BenchRow::new(1).to_record().unwrap();
    let mut g = c.benchmark_group("journal/append_fsync");
    g.throughput(Throughput::Elements(1));
    for writers in [1u64, 8, 64] {
        g.bench_with_input(
            BenchmarkId::new("octopus", writers),
            &writers,
            |b, &writers| {
                b.to_async(&rt).iter_custom(|iters| {
                    let journal = journal.clone();
                    let record = record.clone();
                    async move {
                        let per = iters.div_ceil(writers);
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..writers)
                            .map(|w| {
                                let (journal, record) = (journal.clone(), record.clone());
                                tokio::spawn(async move {
                                    for i in 0..per {
                                        let mut row = record.clone();
                                        row.values_mut()[0] = Value::UInt(w * 1_000_000 + i);
                                        journal
                                            .append(BenchRow::SCHEMA, &Write::Insert(row))
                                            .await
                                            .unwrap();
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                        // Scale to exactly `iters` appends.
                        start
                            .elapsed()
                            .mul_f64(iters as f64 / (per * writers) as f64)
                    }
                })
            },
        );
    }
    // The floor, measured in the same run: a minimal group commit (one
    // thread appending 200-byte lines and syncing once per batch, tasks
    // waiting on a oneshot), with none of the journal's encoding, checksums
    // or index.
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = raw_group_commit(raw_dir.path().join("raw.log"));
    for writers in [1u64, 8, 64] {
        g.bench_with_input(
            BenchmarkId::new("raw_group_commit", writers),
            &writers,
            |b, &writers| {
                b.to_async(&rt).iter_custom(|iters| {
                    let raw = raw.clone();
                    async move {
                        let per = iters.div_ceil(writers);
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..writers)
                            .map(|_| {
                                let raw = raw.clone();
                                tokio::spawn(async move {
                                    for _ in 0..per {
                                        let (tx, rx) = tokio::sync::oneshot::channel();
                                        raw.send((vec![b'x'; 200], tx)).unwrap();
                                        rx.await.unwrap();
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.unwrap();
                        }
                        start
                            .elapsed()
                            .mul_f64(iters as f64 / (per * writers) as f64)
                    }
                })
            },
        );
    }
    g.finish();
}

type RawAppend = (Vec<u8>, tokio::sync::oneshot::Sender<()>);

fn raw_group_commit(path: std::path::PathBuf) -> std::sync::mpsc::Sender<RawAppend> {
    use std::io::Write;
    let (tx, rx) = std::sync::mpsc::channel::<RawAppend>();
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let mut bytes = Vec::new();
            for (line, _) in &batch {
                bytes.extend_from_slice(line);
            }
            file.write_all(&bytes).unwrap();
            file.sync_data().unwrap();
            for (_, reply) in batch {
                let _ = reply.send(());
            }
        }
    });
    tx
}

/// The value the next update of a scaling benchmark writes (every update
/// changes its row).
static SCALING_VALUE: AtomicU64 = AtomicU64::new(common::FIRST_VALUE);

/// Runs `iters` calls of `op`, spread over `tasks` concurrent tasks, each
/// on the keys of its own stride; the elapsed time scaled to exactly
/// `iters` calls.
async fn spread<F, Fut>(tasks: u64, iters: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let per = iters.div_ceil(tasks);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    op((t * 7919 + i * 104_729) % ROWS).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed().mul_f64(iters as f64 / (per * tasks) as f64)
}

/// The raw side's memcached key of row `id`.
fn raw_key(id: u64) -> String {
    format!("raw-scaling:{id}")
}

/// Reads and writes per second through MySQL + memcached with 1, 8 and 64
/// concurrent tasks, beside the raw drivers doing the same work from as
/// many tasks: a read is a memcached hit (`get`), an update is MySQL's
/// `UPDATE` of a changed row and then the cache's invalidation (Octopus
/// sets a 1-byte marker with a short TTL; the raw side does the same).
fn scaling(c: &mut Criterion) {
    let rt = common::multi_thread();
    let url = rt.block_on(common::fresh_database("scaling"));
    let (dao, pool, mc) = rt.block_on(async {
        let primary = Arc::new(MysqlStore::new(&format!("{url}?pool_size=32")).unwrap());
        let cache = Arc::new(
            // A namespace of this run's own: an earlier run's invalidation
            // markers would turn its first reads into misses.
            MemcacheStore::connect(&format!(
                "memcache://{}?namespace=bench-scaling-{}",
                common::memcache_addr(),
                std::process::id()
            ))
            .await
            .unwrap(),
        );
        let plan = Plan::builder(primary.clone())
            .cache(cache, CachePolicy::Invalidate)
            .build()
            .unwrap();
        let dao: Dao<BenchRow> = Dao::open(Arc::new(plan)).await.unwrap();
        let rows: Vec<_> = (0..ROWS)
            .map(|id| BenchRow::new(id).to_record().unwrap())
            .collect();
        primary.upsert_many(BenchRow::SCHEMA, &rows).await.unwrap();
        for id in 0..ROWS {
            dao.read(id).await.unwrap();
        }
        let pool = common::raw_mysql_pool_sized(&url, 32);
        let mc = memcache::exp::AsyncMemcache::connect([common::memcache_addr().as_str()])
            .await
            .unwrap();
        // As many bytes as Octopus' encoding of a row.
        for id in 0..ROWS {
            mc.set(raw_key(id), &[7u8; 72][..], memcache::exp::Ttl::secs(3600))
                .await
                .unwrap();
        }
        (dao, pool, mc)
    });

    let mut g = c.benchmark_group("scaling/read");
    g.throughput(Throughput::Elements(1));
    let misses_before = dao.plan().stats().levels[0].misses;
    for tasks in [1u64, 8, 64] {
        g.bench_with_input(
            BenchmarkId::new("memcache_async", tasks),
            &tasks,
            |b, &tasks| {
                b.to_async(&rt).iter_custom(|iters| {
                    let mc = mc.clone();
                    spread(tasks, iters, move |id| {
                        let mc = mc.clone();
                        async move {
                            let v: Option<Vec<u8>> = mc.get(raw_key(id)).await.unwrap();
                            assert!(v.is_some(), "a raw read is a hit");
                        }
                    })
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("octopus", tasks), &tasks, |b, &tasks| {
            b.to_async(&rt).iter_custom(|iters| {
                let dao = dao.clone();
                spread(tasks, iters, move |id| {
                    let dao = dao.clone();
                    async move {
                        dao.read(id).await.unwrap().unwrap();
                    }
                })
            })
        });
    }
    g.finish();
    let misses = dao.plan().stats().levels[0].misses - misses_before;
    assert_eq!(misses, 0, "every scaling read was a memcached hit");

    let mut g = c.benchmark_group("scaling/update");
    g.throughput(Throughput::Elements(1));
    for tasks in [1u64, 8, 64] {
        g.bench_with_input(
            BenchmarkId::new("mysql_async+memcache_async", tasks),
            &tasks,
            |b, &tasks| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (pool, mc) = (pool.clone(), mc.clone());
                    spread(tasks, iters, move |id| {
                        let (pool, mc) = (pool.clone(), mc.clone());
                        async move {
                            let row = BenchRow::with_value(id, common::next_value(&SCALING_VALUE));
                            let mut conn = pool.get_conn().await.unwrap();
                            conn.exec_drop(
                                "UPDATE bench_rows SET name = ?, value = ? WHERE id = ?",
                                (row.name, row.value, row.id),
                            )
                            .await
                            .unwrap();
                            assert_eq!(conn.affected_rows(), 1, "the update changed the row");
                            drop(conn);
                            mc.set(raw_key(id), &[0u8][..], memcache::exp::Ttl::secs(30))
                                .await
                                .unwrap();
                        }
                    })
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("octopus", tasks), &tasks, |b, &tasks| {
            b.to_async(&rt).iter_custom(|iters| {
                let dao = dao.clone();
                spread(tasks, iters, move |id| {
                    let dao = dao.clone();
                    async move {
                        let mut row = BenchRow::with_value(id, common::next_value(&SCALING_VALUE));
                        dao.update(&mut row).await.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
    rt.block_on(pool.disconnect()).unwrap();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = outage, journal_appends, scaling
}
criterion_main!(benches);
