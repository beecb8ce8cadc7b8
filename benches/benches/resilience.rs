//! The cost of resilience: write latency while the breaker is open and the
//! journal takes writes, the time an outage takes to open the breaker,
//! journal append throughput, and Dao throughput as concurrency grows (no
//! global lock serialises it). Replay is measured in `replay.rs`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BenchRow, ROWS};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fault_proxy::{FaultProxy, Mode};
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
    let k = AtomicU64::new(0);
    let healthy = Mutex::new(Vec::new());
    let journaled = Mutex::new(Vec::new());
    let mut g = c.benchmark_group("outage/update");
    g.bench_function("mysql_healthy", |b| {
        b.to_async(&rt).iter(|| async {
            let mut row = BenchRow::new(k.fetch_add(1, Ordering::Relaxed) % 1000);
            let t = Instant::now();
            assert_eq!(dao.update(&mut row).await.unwrap(), WriteOutcome::Primary);
            healthy.lock().unwrap().push(t.elapsed());
        })
    });
    rt.block_on(async {
        proxy.set(Mode::Reset).await;
        proxy.set(Mode::Refuse).await;
        // Let the breaker open (the replayer's failing calls open it).
        let mut row = BenchRow::new(0);
        dao.update(&mut row).await.unwrap();
        while dao.plan().breaker().state() != BreakerState::Open {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    g.bench_function("journaled_breaker_open", |b| {
        b.to_async(&rt).iter(|| async {
            let mut row = BenchRow::new(k.fetch_add(1, Ordering::Relaxed) % 1000);
            let t = Instant::now();
            assert_eq!(dao.update(&mut row).await.unwrap(), WriteOutcome::Journaled);
            journaled.lock().unwrap().push(t.elapsed());
        })
    });
    g.finish();
    common::report("outage/update/mysql_healthy", &healthy);
    common::report("outage/update/journaled_breaker_open", &journaled);
    rt.block_on(proxy.set(Mode::Pass));
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
            BenchmarkId::from_parameter(writers),
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

/// Reads and writes per second through MySQL + memcached with 1, 8 and 64
/// concurrent tasks.
fn scaling(c: &mut Criterion) {
    let rt = common::multi_thread();
    let url = rt.block_on(common::fresh_database("scaling"));
    let dao: Dao<BenchRow> = rt.block_on(async {
        let primary = Arc::new(MysqlStore::new(&format!("{url}?pool_size=32")).unwrap());
        let cache = Arc::new(
            MemcacheStore::connect(&format!(
                "memcache://{}?namespace=bench-scaling",
                common::memcache_addr()
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
        dao
    });
    for op in ["read", "update"] {
        let mut g = c.benchmark_group(format!("scaling/{op}"));
        g.throughput(Throughput::Elements(1));
        for tasks in [1u64, 8, 64] {
            g.bench_with_input(BenchmarkId::from_parameter(tasks), &tasks, |b, &tasks| {
                b.to_async(&rt).iter_custom(|iters| {
                    let dao = dao.clone();
                    async move {
                        let per = iters.div_ceil(tasks);
                        let start = Instant::now();
                        let handles: Vec<_> = (0..tasks)
                            .map(|t| {
                                let dao = dao.clone();
                                tokio::spawn(async move {
                                    for i in 0..per {
                                        let id = (t * 7919 + i * 104_729) % ROWS;
                                        if op == "read" {
                                            dao.read(id).await.unwrap();
                                        } else {
                                            dao.update(&mut BenchRow::new(id)).await.unwrap();
                                        }
                                    }
                                })
                            })
                            .collect();
                        for h in handles {
                            h.await.unwrap();
                        }
                        start.elapsed().mul_f64(iters as f64 / (per * tasks) as f64)
                    }
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = outage, journal_appends, scaling
}
criterion_main!(benches);
