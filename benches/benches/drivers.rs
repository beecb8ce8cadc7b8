//! Octopus against the raw drivers used well and against sqlx, same table,
//! same rows, same process: read by key, create, update, for SQLite, MySQL
//! and memcached.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{BenchRow, ROWS};
use criterion::{Criterion, criterion_group, criterion_main};
use mysql_async::prelude::Queryable;
use octopus::{Dao, Key, Model, Plan, Store};
use octopus_adapters::memcache::MemcacheStore;
use octopus_adapters::mysql::MysqlStore;
use octopus_adapters::sqlite::SqliteStore;

fn next(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed)
}

fn sqlite(c: &mut Criterion) {
    let rt = common::current_thread();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let dao: Dao<BenchRow> = rt.block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let dao: Dao<BenchRow> = Dao::open(Arc::new(Plan::new(store))).await.unwrap();
        for id in 0..ROWS {
            dao.create(&mut BenchRow::new(id)).await.unwrap();
        }
        dao
    });
    // Raw rusqlite, as an expert would: WAL, synchronous=FULL (Octopus'
    // default), cached prepared statements.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        .unwrap();
    raw.set_prepared_statement_cache_capacity(64);
    let sqlx_pool = rt.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .unwrap()
    });

    let mut g = c.benchmark_group("sqlite/read_by_key");
    let k = AtomicU64::new(0);
    g.bench_function("rusqlite", |b| {
        b.iter(|| {
            let id = next(&k) % ROWS;
            let mut st = raw
                .prepare_cached("SELECT id, name, value FROM bench_rows WHERE id = ?1")
                .unwrap();
            st.query_row([id as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .unwrap()
        })
    });
    g.bench_function("octopus", |b| {
        b.to_async(&rt)
            .iter(|| async { dao.read(next(&k) % ROWS).await.unwrap().unwrap() })
    });
    g.bench_function("sqlx", |b| {
        b.to_async(&rt).iter(|| async {
            let id = next(&k) % ROWS;
            let row: (i64, String, i64) =
                sqlx::query_as("SELECT id, name, value FROM bench_rows WHERE id = ?")
                    .bind(id as i64)
                    .fetch_one(&sqlx_pool)
                    .await
                    .unwrap();
            row
        })
    });
    g.finish();

    let mut g = c.benchmark_group("sqlite/create");
    let raw_ids = AtomicU64::new(1_000_000);
    let oct_ids = AtomicU64::new(2_000_000);
    let sqlx_ids = AtomicU64::new(3_000_000);
    g.bench_function("rusqlite", |b| {
        b.iter(|| {
            let row = BenchRow::new(next(&raw_ids));
            raw.prepare_cached("INSERT INTO bench_rows (id, name, value) VALUES (?1, ?2, ?3)")
                .unwrap()
                .execute(rusqlite::params![row.id as i64, row.name, row.value])
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
            sqlx::query("INSERT INTO bench_rows (id, name, value) VALUES (?, ?, ?)")
                .bind(row.id as i64)
                .bind(row.name)
                .bind(row.value)
                .execute(&sqlx_pool)
                .await
                .unwrap()
        })
    });
    g.finish();

    // Every update changes the row: SQLite skips writing identical content,
    // which would make a repeated update free.
    let v = AtomicU64::new(1_000_000_000);
    let mut g = c.benchmark_group("sqlite/update");
    g.bench_function("rusqlite", |b| {
        b.iter(|| {
            let id = next(&k) % ROWS;
            raw.prepare_cached("UPDATE bench_rows SET name = ?2, value = ?3 WHERE id = ?1")
                .unwrap()
                .execute(rusqlite::params![id as i64, "renamed", next(&v) as i64])
                .unwrap()
        })
    });
    g.bench_function("octopus", |b| {
        b.to_async(&rt).iter(|| async {
            let mut row = BenchRow::new(next(&k) % ROWS);
            row.name = "renamed".into();
            row.value = next(&v) as i64;
            dao.update(&mut row).await.unwrap()
        })
    });
    g.bench_function("sqlx", |b| {
        b.to_async(&rt).iter(|| async {
            let id = next(&k) % ROWS;
            sqlx::query("UPDATE bench_rows SET name = ?, value = ? WHERE id = ?")
                .bind("renamed")
                .bind(next(&v) as i64)
                .bind(id as i64)
                .execute(&sqlx_pool)
                .await
                .unwrap()
        })
    });
    g.finish();
}

fn mysql(c: &mut Criterion) {
    let rt = common::current_thread();
    let url = rt.block_on(common::fresh_database("drivers"));
    let dao: Dao<BenchRow> = rt.block_on(async {
        let store = MysqlStore::new(&format!("{url}?pool_size=16")).unwrap();
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
    let pool = common::raw_mysql_pool(&url);
    let sqlx_pool = rt
        .block_on(
            sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(16)
                .connect(&url),
        )
        .unwrap();

    let k = AtomicU64::new(0);
    let mut g = c.benchmark_group("mysql/read_by_key");
    g.bench_function("mysql_async", |b| {
        b.to_async(&rt).iter(|| async {
            let id = next(&k) % ROWS;
            let mut conn = pool.get_conn().await.unwrap();
            let row: Option<(u64, String, i64)> = conn
                .exec_first("SELECT id, name, value FROM bench_rows WHERE id = ?", (id,))
                .await
                .unwrap();
            row.unwrap()
        })
    });
    g.bench_function("octopus", |b| {
        b.to_async(&rt)
            .iter(|| async { dao.read(next(&k) % ROWS).await.unwrap().unwrap() })
    });
    g.bench_function("sqlx", |b| {
        b.to_async(&rt).iter(|| async {
            let id = next(&k) % ROWS;
            let row: (u64, String, i64) =
                sqlx::query_as("SELECT id, name, value FROM bench_rows WHERE id = ?")
                    .bind(id)
                    .fetch_one(&sqlx_pool)
                    .await
                    .unwrap();
            row
        })
    });
    g.finish();

    let mut g = c.benchmark_group("mysql/create");
    let raw_ids = AtomicU64::new(1_000_000);
    let oct_ids = AtomicU64::new(2_000_000);
    let sqlx_ids = AtomicU64::new(3_000_000);
    g.bench_function("mysql_async", |b| {
        b.to_async(&rt).iter(|| async {
            let row = BenchRow::new(next(&raw_ids));
            let mut conn = pool.get_conn().await.unwrap();
            conn.exec_drop(
                "INSERT INTO bench_rows (id, name, value) VALUES (?, ?, ?)",
                (row.id, row.name, row.value),
            )
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
            sqlx::query("INSERT INTO bench_rows (id, name, value) VALUES (?, ?, ?)")
                .bind(row.id)
                .bind(row.name)
                .bind(row.value)
                .execute(&sqlx_pool)
                .await
                .unwrap()
        })
    });
    g.finish();

    let v = AtomicU64::new(1_000_000_000);
    let mut g = c.benchmark_group("mysql/update");
    g.bench_function("mysql_async", |b| {
        b.to_async(&rt).iter(|| async {
            let id = next(&k) % ROWS;
            let mut conn = pool.get_conn().await.unwrap();
            conn.exec_drop(
                "UPDATE bench_rows SET name = ?, value = ? WHERE id = ?",
                ("renamed", next(&v) as i64, id),
            )
            .await
            .unwrap()
        })
    });
    g.bench_function("octopus", |b| {
        b.to_async(&rt).iter(|| async {
            let mut row = BenchRow::new(next(&k) % ROWS);
            row.name = "renamed".into();
            row.value = next(&v) as i64;
            dao.update(&mut row).await.unwrap()
        })
    });
    g.bench_function("sqlx", |b| {
        b.to_async(&rt).iter(|| async {
            let id = next(&k) % ROWS;
            sqlx::query("UPDATE bench_rows SET name = ?, value = ? WHERE id = ?")
                .bind("renamed")
                .bind(next(&v) as i64)
                .bind(id)
                .execute(&sqlx_pool)
                .await
                .unwrap()
        })
    });
    g.finish();
}

fn memcache(c: &mut Criterion) {
    let rt = common::current_thread();
    let addr = common::memcache_addr();
    let (store, raw) = rt.block_on(async {
        let store = MemcacheStore::connect(&format!("memcache://{addr}?namespace=bench"))
            .await
            .unwrap();
        let raw = memcache::exp::AsyncMemcache::connect([addr.as_str()])
            .await
            .unwrap();
        (store, raw)
    });
    // The raw client stores as many bytes as Octopus' encoding of a row
    // (about 72), under its own keys.
    let value: Vec<u8> = vec![7u8; 72];
    rt.block_on(async {
        for id in 0..ROWS {
            store
                .upsert(BenchRow::SCHEMA, &BenchRow::new(id).to_record().unwrap())
                .await
                .unwrap();
            raw.set(format!("raw:{id}"), &value, memcache::exp::Ttl::secs(300))
                .await
                .unwrap();
        }
    });
    let k = AtomicU64::new(0);
    let mut g = c.benchmark_group("memcache/read_by_key");
    g.bench_function("memcache_async", |b| {
        b.to_async(&rt).iter(|| async {
            let v: Option<Vec<u8>> = raw.get(format!("raw:{}", next(&k) % ROWS)).await.unwrap();
            v.unwrap()
        })
    });
    g.bench_function("octopus", |b| {
        b.to_async(&rt).iter(|| async {
            store
                .get(BenchRow::SCHEMA, &Key::UInt(next(&k) % ROWS))
                .await
                .unwrap()
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("memcache/create");
    let raw_ids = AtomicU64::new(1_000_000);
    let oct_ids = AtomicU64::new(2_000_000);
    g.bench_function("memcache_async", |b| {
        b.to_async(&rt).iter(|| async {
            raw.add(
                format!("raw:{}", next(&raw_ids)),
                &value,
                memcache::exp::Ttl::secs(300),
            )
            .await
            .unwrap()
        })
    });
    g.bench_function("octopus", |b| {
        b.to_async(&rt).iter(|| async {
            store
                .insert(
                    BenchRow::SCHEMA,
                    &BenchRow::new(next(&oct_ids)).to_record().unwrap(),
                )
                .await
                .unwrap()
        })
    });
    g.finish();

    // Every update stores new content (a counter in the value), on both
    // sides.
    let v = AtomicU64::new(common::FIRST_VALUE);
    let mut g = c.benchmark_group("memcache/update");
    g.bench_function("memcache_async", |b| {
        b.to_async(&rt).iter(|| async {
            let mut bytes = value.clone();
            bytes[..8].copy_from_slice(&common::next_value(&v).to_le_bytes());
            raw.set(
                format!("raw:{}", next(&k) % ROWS),
                &bytes,
                memcache::exp::Ttl::secs(300),
            )
            .await
            .unwrap()
        })
    });
    g.bench_function("octopus", |b| {
        b.to_async(&rt).iter(|| async {
            let row = BenchRow::with_value(next(&k) % ROWS, common::next_value(&v));
            store
                .upsert(BenchRow::SCHEMA, &row.to_record().unwrap())
                .await
                .unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = sqlite, mysql, memcache
}
criterion_main!(benches);
