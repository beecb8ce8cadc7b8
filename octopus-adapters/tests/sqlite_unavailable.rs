//! A database locked by another process's connection makes writes fail with
//! `Unavailable` after the busy timeout, never hang; reads keep working (WAL),
//! and writes succeed again once the lock is gone.
#![cfg(feature = "sqlite")]

use std::sync::Arc;
use std::time::Duration;

use octopus::{Dao, Error, Model, Plan};
use octopus_adapters::sqlite::{SqliteOptions, SqliteStore};

#[derive(Debug, Clone, PartialEq, Model)]
struct Row {
    #[octopus(key)]
    id: i64,
    v: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_unavailable_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let options = SqliteOptions::default().busy_timeout(Duration::from_millis(200));
    let store = SqliteStore::open_with(&path, options).await.unwrap();
    let rows: Dao<Row> = Dao::open(Arc::new(Plan::new(store))).await.unwrap();
    rows.create(&mut Row {
        id: 1,
        v: "before".into(),
    })
    .await
    .unwrap();

    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let err = rows
        .create(&mut Row {
            id: 2,
            v: "during".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(
        err.to_string().contains("locked.db"),
        "names the store: {err}"
    );
    // WAL readers are not blocked by the writer's lock.
    assert_eq!(rows.read(1).await.unwrap().unwrap().v, "before");

    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    rows.create(&mut Row {
        id: 2,
        v: "after".into(),
    })
    .await
    .unwrap();
    assert_eq!(rows.read(2).await.unwrap().unwrap().v, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_in_one_batch_do_not_undo_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("batch.db"))
        .await
        .unwrap();
    let rows: Dao<Row> = Dao::open(Arc::new(Plan::new(store))).await.unwrap();
    rows.create(&mut Row {
        id: 0,
        v: "taken".into(),
    })
    .await
    .unwrap();
    // Many concurrent creates, a third of them duplicates of id 0: they share
    // transactions on the writer thread, and only the duplicates fail.
    let mut tasks = Vec::new();
    for i in 1..=90i64 {
        let rows = rows.clone();
        let id = if i % 3 == 0 { 0 } else { i };
        tasks.push(tokio::spawn(async move {
            (
                id,
                rows.create(&mut Row {
                    id,
                    v: format!("v{i}"),
                })
                .await,
            )
        }));
    }
    for t in tasks {
        let (id, out) = t.await.unwrap();
        if id == 0 {
            assert!(matches!(out, Err(Error::AlreadyExists { .. })), "{out:?}");
        } else {
            out.unwrap();
            assert!(rows.read(id).await.unwrap().is_some());
        }
    }
    assert_eq!(rows.read(0).await.unwrap().unwrap().v, "taken");
}
