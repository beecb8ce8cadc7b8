//! Journal replay into MySQL with the journal contract's semantics: every
//! entry a versioned update conditional on its expected version, applied
//! in batches that lock the rows they check. Measured beside the physical
//! floor, the raw multi-row upsert of the same rows through mysql_async, in
//! the same run; the same replay from a JetStream stream (the fleet's
//! journal, on a nats-server of the bench's own with `sync_interval:
//! always`); and the time from MySQL answering again to the first replayed
//! row.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::versioned::{FLOOR_ROWS, N, VersionedRow, journal_updates};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fault_proxy::{FaultProxy, Mode};
use mysql_async::prelude::Queryable;
use octopus::journal::{Journal, JournalOptions};
use octopus::{Dao, Fallback, Model, Plan, Store, Write};
use octopus_adapters::mysql::MysqlStore;
use octopus_adapters::nats::JetStreamJournal;
use octopus_test_support::nats::OwnNats;

fn server() -> std::net::SocketAddr {
    let opts = mysql_async::Opts::from_url(&common::mysql_url()).unwrap();
    format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
        .parse()
        .unwrap()
}

/// Journals N updates from `version` to `version + 1` into a new stream
/// (not timed).
async fn stream_updates(nats: &OwnNats, stream: &str, version: u64) -> Arc<JetStreamJournal> {
    let url = format!("{}?stream={stream}", nats.url());
    let journal = Arc::new(JetStreamJournal::connect(&url).await.unwrap());
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let journal = journal.clone();
            tokio::spawn(async move {
                for id in (t..N).step_by(16) {
                    let write = Write::Update {
                        record: VersionedRow::at(id, version + 1).to_record().unwrap(),
                        expected_version: Some(version),
                    };
                    let outage = octopus::Error::unavailable("mysql", "down");
                    journal
                        .write(VersionedRow::SCHEMA, &write, None, outage)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    journal
}

/// Seeds N rows at version 1.
async fn seed(store: &MysqlStore) {
    store.ensure_schema(VersionedRow::SCHEMA).await.unwrap();
    let rows: Vec<_> = (0..N)
        .map(|id| VersionedRow::at(id, 1).to_record().unwrap())
        .collect();
    store
        .upsert_many(VersionedRow::SCHEMA, &rows)
        .await
        .unwrap();
}

fn replay(c: &mut Criterion) {
    // The conditional path is what is measured: without a version field
    // replay would apply plain updates and check nothing.
    assert!(
        VersionedRow::SCHEMA.version_index().is_some(),
        "the replayed model is versioned"
    );
    let rt = common::multi_thread();
    let url = rt.block_on(common::fresh_database("replay_conditional"));
    let store = rt.block_on(async {
        let store = MysqlStore::new(&url).unwrap();
        seed(&store).await;
        store
    });
    let pool = common::raw_mysql_pool(&url);
    let version = AtomicU64::new(1);
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("mysql_conditional_updates", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (store, pool, version) = (store.clone(), pool.clone(), &version);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let from = version.load(Ordering::SeqCst);
                    journal_updates(dir.path(), from).await;
                    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
                    let start = Instant::now();
                    let plan = Arc::new(
                        Plan::builder(Arc::new(store.clone()))
                            .journal(journal.clone())
                            .build()
                            .unwrap(),
                    );
                    let _dao: Dao<VersionedRow> = Dao::new(plan.clone());
                    plan.drained().await;
                    total += start.elapsed();
                    let stats = journal.stats();
                    assert_eq!(
                        (stats.replayed, stats.dead_letters),
                        (N, 0),
                        "every conditional update applies"
                    );
                    plan.close().await.unwrap();
                    // Every row now holds the next version's content.
                    let mut conn = pool.get_conn().await.unwrap();
                    let rewritten: Option<u64> = conn
                        .exec_first(
                            "SELECT COUNT(*) FROM replay_rows \
                             WHERE version = ? AND value = id * 1000 + ?",
                            (from + 1, from + 1),
                        )
                        .await
                        .unwrap();
                    assert_eq!(rewritten, Some(N), "every row changed");
                    drop(conn);
                    version.store(from + 1, Ordering::SeqCst);
                }
                total
            }
        })
    });
    let nats = rt.block_on(OwnNats::start());
    g.bench_function("jetstream_conditional_updates", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (store, nats, version) = (store.clone(), &nats, &version);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let from = version.load(Ordering::SeqCst);
                    let journal = stream_updates(nats, &format!("replay{from}"), from).await;
                    assert_eq!(journal.pending_now().await.unwrap(), N);
                    let start = Instant::now();
                    let plan = Arc::new(
                        Plan::builder(Arc::new(store.clone()))
                            .fallback(journal.clone())
                            .build()
                            .unwrap(),
                    );
                    let _dao: Dao<VersionedRow> = Dao::new(plan.clone());
                    journal.drained().await;
                    total += start.elapsed();
                    let stats = Fallback::stats(&*journal).unwrap();
                    assert_eq!(
                        (stats.replayed, stats.dead_letters),
                        (N, 0),
                        "every conditional update applies"
                    );
                    plan.close().await.unwrap();
                    version.store(from + 1, Ordering::SeqCst);
                }
                total
            }
        })
    });
    // The floor: the same rows, as many per multi-row upsert as a replay
    // batch holds by default, no checks.
    let raw_version = AtomicU64::new(1_000_000);
    g.bench_function("mysql_raw_multirow_upsert_floor", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (pool, raw_version, version) = (pool.clone(), &raw_version, &version);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let v = raw_version.fetch_add(1, Ordering::SeqCst);
                    let mut conn = pool.get_conn().await.unwrap();
                    let start = Instant::now();
                    for chunk in (0..N).collect::<Vec<_>>().chunks(FLOOR_ROWS) {
                        let marks = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
                        let text = format!(
                            "INSERT INTO replay_rows (id, name, value, version) VALUES {marks} \
                             ON DUPLICATE KEY UPDATE name = VALUES(name), value = VALUES(value), \
                             version = VALUES(version)"
                        );
                        let params: Vec<mysql_async::Value> = chunk
                            .iter()
                            .flat_map(|&id| {
                                let r = VersionedRow::at(id, v);
                                [r.id.into(), r.name.into(), r.value.into(), r.version.into()]
                            })
                            .collect();
                        conn.exec_drop(text, params).await.unwrap();
                    }
                    total += start.elapsed();
                }
                // Put the rows back where the conditional replay expects them.
                let mut conn = pool.get_conn().await.unwrap();
                conn.exec_drop(
                    "UPDATE replay_rows SET version = ?",
                    (version.load(Ordering::SeqCst),),
                )
                .await
                .unwrap();
                total
            }
        })
    });
    g.finish();
    rt.block_on(time_to_first_replayed_row(&url));
}

/// From the moment MySQL answers again (the fault proxy passes traffic) to
/// the replayer's first applied batch, over 5 outages.
async fn time_to_first_replayed_row(url: &str) {
    let db = url.rsplit_once('/').unwrap().1.to_owned();
    let proxy = FaultProxy::start(server()).await.unwrap();
    let mut samples = Vec::new();
    for round in 0..5u64 {
        let dir = tempfile::tempdir().unwrap();
        let store = MysqlStore::new(&format!(
            "mysql://root@{}/{db}?deadline_ms=500",
            proxy.addr()
        ))
        .unwrap();
        let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        let plan = Arc::new(
            Plan::builder(Arc::new(store))
                .journal(journal.clone())
                .build()
                .unwrap(),
        );
        let dao: Dao<VersionedRow> = Dao::new(plan.clone());
        proxy.set(Mode::Reset).await;
        proxy.set(Mode::Refuse).await;
        let mut row = VersionedRow::at(10_000_000 + round, 0);
        dao.create(&mut row).await.unwrap();
        let mut modes = plan.watch_mode();
        modes.borrow_and_update();
        let start = Instant::now();
        proxy.set(Mode::Pass).await;
        while journal.stats().replayed == 0 {
            modes.changed().await.unwrap();
        }
        samples.push(start.elapsed());
        plan.close().await.unwrap();
    }
    samples.sort();
    println!(
        "replay/time_to_first_replayed_row: median {:.1} ms, max {:.1} ms (5 outages, MySQL refused then back)",
        samples[2].as_secs_f64() * 1e3,
        samples[4].as_secs_f64() * 1e3
    );
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = replay
}
criterion_main!(benches);
