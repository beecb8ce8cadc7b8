//! `SqliteStore::apply` beyond the conformance suite: a locked database fails
//! the whole call and writes nothing; a constraint the model does not know
//! about (an index a DBA added) refuses only its own change.
#![cfg(feature = "sqlite")]

use std::time::Duration;

use octopus::{Change, Error, Key, Model, Precondition, Store};
use octopus_adapters::sqlite::{SqliteOptions, SqliteStore};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "items")]
struct Item {
    #[octopus(key)]
    id: i64,
    label: String,
    #[octopus(version)]
    version: u32,
}

fn item(id: i64, label: &str, version: u32) -> Item {
    Item {
        id,
        label: label.into(),
        version,
    }
}

fn put(i: &Item, precondition: Precondition) -> Change {
    Change {
        key: Key::Int(i.id),
        precondition,
        row: Some(i.to_record().unwrap()),
    }
}

async fn store_with(path: &std::path::Path, items: &[Item]) -> SqliteStore {
    let options = SqliteOptions::default().busy_timeout(Duration::from_millis(200));
    let store = SqliteStore::open_with(path, options).await.unwrap();
    store.ensure_schema(Item::SCHEMA).await.unwrap();
    for i in items {
        store
            .insert(Item::SCHEMA, &i.to_record().unwrap())
            .await
            .unwrap();
    }
    store
}

async fn stored(store: &SqliteStore, id: i64) -> Option<Item> {
    store
        .get(Item::SCHEMA, &Key::Int(id))
        .await
        .unwrap()
        .map(|r| Item::from_record(r).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_fails_the_whole_call_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let store = store_with(&path, &[item(1, "one", 1)]).await;

    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let changes = [
        put(&item(1, "one v2", 2), Precondition::Version(1)),
        put(&item(2, "two", 1), Precondition::Absent),
    ];
    let err = store.apply(Item::SCHEMA, &changes).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);

    assert_eq!(stored(&store, 1).await, Some(item(1, "one", 1)));
    assert_eq!(stored(&store, 2).await, None);
    // Once the lock is gone the same changes apply.
    let out = store.apply(Item::SCHEMA, &changes).await.unwrap();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(stored(&store, 2).await, Some(item(2, "two", 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constraint_of_the_table_refuses_only_its_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("indexed.db");
    let store = store_with(&path, &[item(1, "taken", 1)]).await;
    let admin = rusqlite::Connection::open(&path).unwrap();
    admin
        .execute_batch("CREATE UNIQUE INDEX items_label ON items(label)")
        .unwrap();
    drop(admin);

    let mut mismatched = put(&item(5, "five", 1), Precondition::Absent);
    mismatched.key = Key::Int(6);
    let changes = [
        put(&item(2, "taken", 1), Precondition::Absent),
        put(&item(3, "free", 1), Precondition::Absent),
        mismatched,
    ];
    let out = store.apply(Item::SCHEMA, &changes).await.unwrap();
    assert!(
        matches!(&out[0], Err(Error::Rejected { message, .. })
            if message.contains("`items`") && message.contains("key 2")),
        "{out:?}"
    );
    assert!(out[1].is_ok(), "{out:?}");
    assert!(
        matches!(&out[2], Err(Error::Invalid { what }) if what.contains("key 6")),
        "{out:?}"
    );
    assert_eq!(stored(&store, 2).await, None);
    assert_eq!(stored(&store, 3).await, Some(item(3, "free", 1)));
    assert_eq!(stored(&store, 5).await, None);
    assert_eq!(stored(&store, 6).await, None);
}
