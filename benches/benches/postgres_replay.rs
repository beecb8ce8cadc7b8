//! Journal replay into PostgreSQL, measured as `replay.rs` measures it into
//! MySQL (the same versioned model and journal), beside its raw floor in
//! the same run: the multi-row upsert of the same rows through
//! tokio-postgres, and the same rows as `UNNEST` statements.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::postgres::{multirow_upsert, raw_client, schema, unnest_upsert};
use common::versioned::{FLOOR_ROWS, N, VersionedRow, journal_updates};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use octopus::journal::{Journal, JournalOptions};
use octopus::{Dao, Model, Plan, Store};
use octopus_adapters::postgres::PostgresStore;
use tokio_postgres::types::ToSql;

/// Journal replay into PostgreSQL, as `replay.rs` measures it into MySQL:
/// N versioned updates, each conditional on its expected version, replayed
/// from a journal reopened as after a restart by `PostgresStore::apply`;
/// the floor is the raw multi-row upsert of the same rows, FLOOR_ROWS per
/// statement, no checks, no transaction, no journal (and the same as
/// `UNNEST` statements).
fn replay(c: &mut Criterion) {
    assert!(
        VersionedRow::SCHEMA.version_index().is_some(),
        "the replayed model is versioned"
    );
    let rt = common::multi_thread();
    let (url, schema) = rt.block_on(schema("replay"));
    let store = rt.block_on(async {
        let store = PostgresStore::new(&url).unwrap();
        store.ensure_schema(VersionedRow::SCHEMA).await.unwrap();
        let rows: Vec<_> = (0..N)
            .map(|id| VersionedRow::at(id, 1).to_record().unwrap())
            .collect();
        store
            .upsert_many(VersionedRow::SCHEMA, &rows)
            .await
            .unwrap();
        store
    });
    let raw = rt.block_on(raw_client(&schema));
    let version = AtomicU64::new(1);
    let mut g = c.benchmark_group("replay_postgres");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("postgres_conditional_updates", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (store, raw, version) = (store.clone(), &raw, &version);
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
                    let next = (from + 1) as i64;
                    let rewritten = raw
                        .query_one(
                            "SELECT COUNT(*) FROM replay_rows \
                             WHERE version = $1 AND value = id * 1000 + $1",
                            &[&next],
                        )
                        .await
                        .unwrap();
                    assert_eq!(rewritten.get::<_, i64>(0), N as i64, "every row changed");
                    version.store(from + 1, Ordering::SeqCst);
                }
                total
            }
        })
    });
    let columns = ["id", "name", "value", "version"];
    let multirow = rt
        .block_on(raw.prepare(&multirow_upsert("replay_rows", &columns, FLOOR_ROWS)))
        .unwrap();
    let unnest = rt
        .block_on(raw.prepare(&unnest_upsert(
            "replay_rows",
            &columns,
            &["bigint", "text", "bigint", "bigint"],
        )))
        .unwrap();
    let raw_version = AtomicU64::new(1_000_000);
    for (name, statement, arrays) in [
        ("postgres_raw_multirow_upsert_floor", &multirow, false),
        ("postgres_raw_unnest_upsert", &unnest, true),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (raw, raw_version, version) = (&raw, &raw_version, &version);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let v = raw_version.fetch_add(1, Ordering::SeqCst);
                        let start = Instant::now();
                        for chunk in (0..N).collect::<Vec<_>>().chunks(FLOOR_ROWS) {
                            let rows: Vec<(i64, String, i64, i64)> = chunk
                                .iter()
                                .map(|&id| {
                                    let r = VersionedRow::at(id, v);
                                    (r.id as i64, r.name, r.value, r.version as i64)
                                })
                                .collect();
                            if arrays {
                                let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
                                let names: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
                                let values: Vec<i64> = rows.iter().map(|r| r.2).collect();
                                let versions: Vec<i64> = rows.iter().map(|r| r.3).collect();
                                raw.execute(statement, &[&ids, &names, &values, &versions])
                                    .await
                                    .unwrap();
                            } else {
                                let params: Vec<&(dyn ToSql + Sync)> = rows
                                    .iter()
                                    .flat_map(|(a, b, c, d)| [a as &(dyn ToSql + Sync), b, c, d])
                                    .collect();
                                raw.execute(statement, &params).await.unwrap();
                            }
                        }
                        total += start.elapsed();
                    }
                    // Put the rows back where the conditional replay expects them.
                    let at = version.load(Ordering::SeqCst) as i64;
                    raw.execute("UPDATE replay_rows SET version = $1", &[&at])
                        .await
                        .unwrap();
                    total
                }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = replay
}
criterion_main!(benches);
