//! An SQLite primary made unavailable for real (another connection holds an
//! exclusive lock): writes are journaled and readable, and once the lock is
//! gone the journal drains and the file holds the last write per key.
#![cfg(feature = "sqlite")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions};
use octopus::{BreakerOptions, CachePolicy, Dao, MemoryStore, Model, Plan, WriteOutcome};
use octopus_adapters::sqlite::{SqliteOptions, SqliteStore};
use octopus_test_support::until_drained;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "stock")]
struct Stock {
    #[octopus(key)]
    sku: String,
    count: i64,
}

fn rows(path: &std::path::Path) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT sku, count FROM stock").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_journaled_then_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let store = SqliteStore::open_with(
        &db,
        SqliteOptions::default().busy_timeout(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let journal = Journal::open(dir.path().join("journal"), JournalOptions::default()).unwrap();
    let breaker = BreakerOptions {
        window: 4,
        minimum_calls: 2,
        open_wait: Duration::from_millis(200),
        half_open_calls: 1,
        ..BreakerOptions::default()
    };
    let plan = Arc::new(
        Plan::builder(Arc::new(store))
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .breaker(breaker)
            .journal(journal)
            .build()
            .unwrap(),
    );
    let stock: Dao<Stock> = Dao::open(plan.clone()).await.unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..10 {
        let sku = format!("s{i}");
        stock
            .create(&mut Stock {
                sku: sku.clone(),
                count: i,
            })
            .await
            .unwrap();
        expected.insert(sku, i);
    }

    // Another process takes the database.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 0..10 {
        let mut s = Stock {
            sku: format!("s{i}"),
            count: 100 + i,
        };
        assert_eq!(stock.update(&mut s).await.unwrap(), WriteOutcome::Journaled);
        expected.insert(s.sku, s.count);
    }
    stock
        .create(&mut Stock {
            sku: "new".into(),
            count: 1,
        })
        .await
        .unwrap();
    expected.insert("new".into(), 1);
    assert_eq!(
        stock.read("s3").await.unwrap().unwrap().count,
        103,
        "read-your-writes during the outage"
    );
    assert_eq!(stock.read("new").await.unwrap().unwrap().count, 1);
    assert_eq!(rows(&db).get("s3"), Some(&3), "the file has not changed");

    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    // Writes keep arriving while it drains.
    for i in 0..5 {
        let mut s = Stock {
            sku: format!("s{i}"),
            count: 200 + i,
        };
        stock.update(&mut s).await.unwrap();
        expected.insert(s.sku, s.count);
    }
    until_drained(&plan, Duration::from_secs(10)).await;
    assert_eq!(rows(&db), expected);
    assert_eq!(
        stock
            .update(&mut Stock {
                sku: "new".into(),
                count: 2
            })
            .await
            .unwrap(),
        WriteOutcome::Primary
    );
}
