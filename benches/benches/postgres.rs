//! PostgreSQL: Octopus against raw tokio-postgres used well and against
//! sqlx's PostgreSQL driver, same table, same rows, same process (read by
//! key, create, update); batched upserts against a raw multi-row
//! `INSERT … ON CONFLICT … DO UPDATE` and a raw `UNNEST` upsert of the
//! same rows (journal replay is in `postgres_replay.rs`). Each group works
//! in a fresh schema of the shared test server (`OCTOPUS_POSTGRES_URL`), so
//! runs and tests never share tables.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::postgres::{multirow_upsert, raw_client, schema, settle, sqlx_pool, unnest_upsert};
use common::{BenchRow, FIRST_VALUE, ROWS, next_value};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use octopus::{Dao, Model, Plan, Record, Store};
use octopus_adapters::postgres::PostgresStore;
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

fn next(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed)
}

/// Read by key, create, update: `Dao<BenchRow>` over a plan whose primary
/// is a `PostgresStore` (breaker included, no caches).
/// Raw and Octopus reads of the same keys alternated pair by pair (which
/// goes first alternating too), so drift in the server or the machine (a
/// checkpoint, autovacuum, another process) lands on both sides alike:
/// the medians and their ratio, printed for BENCHMARKS.md.
async fn interleaved_reads(
    raw: &tokio_postgres::Client, select: &tokio_postgres::Statement, dao: &Dao<BenchRow>,
) {
    const ROUNDS: u64 = 20_000;
    let mut times: [Vec<std::time::Duration>; 3] = Default::default();
    for i in 0..ROUNDS {
        let id = i % ROWS;
        for step in 0..3 {
            let side = ((i + step) % 3) as usize;
            let started = std::time::Instant::now();
            match side {
                0 => {
                    let row = raw.query_one(select, &[&(id as i64)]).await.unwrap();
                    std::hint::black_box((row.get::<_, i64>(0), row.get::<_, String>(1)));
                }
                1 => {
                    let store = dao.plan().primary();
                    std::hint::black_box(store.get(BenchRow::SCHEMA, &id.into()).await.unwrap());
                }
                _ => {
                    std::hint::black_box(dao.read(id).await.unwrap().unwrap());
                }
            }
            times[side].push(started.elapsed());
        }
    }
    let p50 = |t: &mut Vec<std::time::Duration>| {
        t.sort();
        t[t.len() / 2].as_secs_f64() * 1e6
    };
    let [raw_t, store_t, dao_t] = &mut times;
    let (r, st, d) = (p50(raw_t), p50(store_t), p50(dao_t));
    println!(
        "postgres/read_by_key interleaved over {ROUNDS} rounds: tokio_postgres p50 {r:.1} us, \
         PostgresStore::get p50 {st:.1} us ({:.3}), Dao::read p50 {d:.1} us ({:.3})",
        st / r,
        d / r
    );
}

fn drivers(c: &mut Criterion) {
    let rt = common::current_thread();
    let (url, schema) = rt.block_on(schema("drivers"));
    let dao: Dao<BenchRow> = rt.block_on(async {
        let store = PostgresStore::new(&format!("{url}&pool_size=16")).unwrap();
        let dao: Dao<BenchRow> = Dao::open(Arc::new(Plan::new(store))).await.unwrap();
        let rows: Vec<_> = (0..ROWS)
            .map(|id| BenchRow::new(id).to_record().unwrap())
            .collect();
        dao.plan()
            .primary()
            .upsert_many(BenchRow::SCHEMA, &rows)
            .await
            .unwrap();
        dao
    });
    let (raw, select, insert, update) = rt.block_on(async {
        let raw = raw_client(&schema).await;
        let select = raw
            .prepare("SELECT id, name, value FROM bench_rows WHERE id = $1")
            .await
            .unwrap();
        let insert = raw
            .prepare("INSERT INTO bench_rows (id, name, value) VALUES ($1, $2, $3)")
            .await
            .unwrap();
        let update = raw
            .prepare("UPDATE bench_rows SET name = $1, value = $2 WHERE id = $3")
            .await
            .unwrap();
        (raw, select, insert, update)
    });
    let sqlx_pool = rt.block_on(sqlx_pool(&schema));

    let k = AtomicU64::new(0);
    rt.block_on(settle(&raw, "bench_rows"));
    let mut g = c.benchmark_group("postgres/read_by_key");
    g.bench_function("tokio_postgres", |b| {
        b.to_async(&rt).iter(|| async {
            let id = (next(&k) % ROWS) as i64;
            let row = raw.query_one(&select, &[&id]).await.unwrap();
            (
                row.get::<_, i64>(0),
                row.get::<_, String>(1),
                row.get::<_, i64>(2),
            )
        })
    });
    g.bench_function("octopus", |b| {
        b.to_async(&rt)
            .iter(|| async { dao.read(next(&k) % ROWS).await.unwrap().unwrap() })
    });
    g.bench_function("sqlx", |b| {
        b.to_async(&rt).iter(|| async {
            let id = (next(&k) % ROWS) as i64;
            let row: (i64, String, i64) =
                sqlx::query_as("SELECT id, name, value FROM bench_rows WHERE id = $1")
                    .bind(id)
                    .fetch_one(&sqlx_pool)
                    .await
                    .unwrap();
            row
        })
    });
    g.finish();
    rt.block_on(interleaved_reads(&raw, &select, &dao));

    rt.block_on(settle(&raw, "bench_rows"));
    let mut g = c.benchmark_group("postgres/create");
    let raw_ids = AtomicU64::new(1_000_000);
    let oct_ids = AtomicU64::new(2_000_000);
    let sqlx_ids = AtomicU64::new(3_000_000);
    g.bench_function("tokio_postgres", |b| {
        b.to_async(&rt).iter(|| async {
            let row = BenchRow::new(next(&raw_ids));
            raw.execute(&insert, &[&(row.id as i64), &row.name, &row.value])
                .await
                .unwrap()
        })
    });
    g.bench_function("octopus", |b| {
        b.to_async(&rt).iter(|| async {
            dao.create(&mut BenchRow::new(next(&oct_ids)))
                .await
                .unwrap()
        })
    });
    g.bench_function("sqlx", |b| {
        b.to_async(&rt).iter(|| async {
            let row = BenchRow::new(next(&sqlx_ids));
            sqlx::query("INSERT INTO bench_rows (id, name, value) VALUES ($1, $2, $3)")
                .bind(row.id as i64)
                .bind(row.name)
                .bind(row.value)
                .execute(&sqlx_pool)
                .await
                .unwrap()
        })
    });
    g.finish();

    // Every update writes a new value into its row, on every side.
    let v = AtomicU64::new(FIRST_VALUE);
    rt.block_on(settle(&raw, "bench_rows"));
    let mut g = c.benchmark_group("postgres/update");
    g.bench_function("tokio_postgres", |b| {
        b.to_async(&rt).iter(|| async {
            let id = (next(&k) % ROWS) as i64;
            let changed = raw
                .execute(&update, &[&"renamed", &next_value(&v), &id])
                .await
                .unwrap();
            assert_eq!(changed, 1);
        })
    });
    g.bench_function("octopus", |b| {
        b.to_async(&rt).iter(|| async {
            let mut row = BenchRow::with_value(next(&k) % ROWS, next_value(&v));
            row.name = "renamed".into();
            dao.update(&mut row).await.unwrap()
        })
    });
    g.bench_function("sqlx", |b| {
        b.to_async(&rt).iter(|| async {
            let id = (next(&k) % ROWS) as i64;
            sqlx::query("UPDATE bench_rows SET name = $1, value = $2 WHERE id = $3")
                .bind("renamed")
                .bind(next_value(&v))
                .bind(id)
                .execute(&sqlx_pool)
                .await
                .unwrap()
        })
    });
    g.finish();
}

/// Rows per batch of the upsert benchmarks: the store's largest single
/// statement, and the journal's default replay batch (ten statements in
/// one transaction on the store's side).
const BATCHES: [u64; 2] = [512, 4000];

/// Batched upserts of existing rows, each batch writing a new value into
/// every row: `Store::upsert_many` against the raw multi-row statement (the
/// floor) and the raw `UNNEST` statement, each one statement per batch.
/// Timed from rows in memory (records for the store, typed values for the
/// raw driver) to the database's answer.
fn upsert(c: &mut Criterion) {
    let rt = common::current_thread();
    let (url, schema) = rt.block_on(schema("upsert"));
    let most = *BATCHES.iter().max().unwrap();
    let store = rt.block_on(async {
        let store = PostgresStore::new(&url).unwrap();
        store.ensure_schema(BenchRow::SCHEMA).await.unwrap();
        let rows: Vec<_> = (0..most)
            .map(|id| BenchRow::new(id).to_record().unwrap())
            .collect();
        store.upsert_many(BenchRow::SCHEMA, &rows).await.unwrap();
        store
    });
    let raw = rt.block_on(raw_client(&schema));
    let columns = ["id", "name", "value"];
    let unnest = rt
        .block_on(raw.prepare(&unnest_upsert(
            "bench_rows",
            &columns,
            &["bigint", "text", "bigint"],
        )))
        .unwrap();
    let v = AtomicU64::new(FIRST_VALUE);
    // After a benchmark that ran (a filter may skip it), every row of the
    // batch holds the last batch's value.
    let checked = AtomicU64::new(FIRST_VALUE);
    let check = |batch: u64| {
        let next = v.load(Ordering::SeqCst);
        if checked.swap(next, Ordering::SeqCst) == next {
            return;
        }
        let value = next as i64 - 1;
        let row = rt
            .block_on(raw.query_one(
                "SELECT COUNT(*) FROM bench_rows WHERE id < $1 AND value = $2",
                &[&(batch as i64), &value],
            ))
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), batch as i64, "every row changed");
    };
    let rows_of = |batch: u64| -> Vec<(i64, String, i64)> {
        let value = next_value(&v);
        (0..batch)
            .map(|id| {
                let r = BenchRow::with_value(id, value);
                (r.id as i64, r.name, r.value)
            })
            .collect()
    };
    let (raw, unnest, store, v) = (&raw, &unnest, &store, &v);
    let (rows_of, check) = (&rows_of, &check);
    let mut g = c.benchmark_group("postgres/upsert_many");
    for batch in BATCHES {
        g.throughput(Throughput::Elements(batch));
        let multirow: &Statement = &rt
            .block_on(raw.prepare(&multirow_upsert("bench_rows", &columns, batch as usize)))
            .unwrap();
        g.bench_function(BenchmarkId::new("tokio_postgres_multirow", batch), |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let rows = rows_of(batch);
                    let start = Instant::now();
                    let params: Vec<&(dyn ToSql + Sync)> = rows
                        .iter()
                        .flat_map(|(id, name, value)| [id as &(dyn ToSql + Sync), name, value])
                        .collect();
                    raw.execute(multirow, &params).await.unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
        check(batch);
        g.bench_function(BenchmarkId::new("tokio_postgres_unnest", batch), |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let rows = rows_of(batch);
                    let start = Instant::now();
                    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
                    let names: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
                    let values: Vec<i64> = rows.iter().map(|r| r.2).collect();
                    raw.execute(unnest, &[&ids, &names, &values]).await.unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
        check(batch);
        g.bench_function(BenchmarkId::new("octopus", batch), |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let value = next_value(v);
                    let records: Vec<Record> = (0..batch)
                        .map(|id| BenchRow::with_value(id, value).to_record().unwrap())
                        .collect();
                    let start = Instant::now();
                    store.upsert_many(BenchRow::SCHEMA, &records).await.unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
        check(batch);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = drivers, upsert
}
criterion_main!(benches);
