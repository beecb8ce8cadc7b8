//! SQLite tables have one typed column per field, and a table that exists
//! with columns the model cannot use is refused at open, naming the column.
#![cfg(feature = "sqlite")]

use std::sync::Arc;

use octopus::{Dao, Error, Model, Plan};
use octopus_adapters::sqlite::SqliteStore;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "gadgets")]
struct Gadget {
    #[octopus(key)]
    id: String,
    weight: f64,
    count: u32,
    blob: Option<Vec<u8>>,
    #[octopus(json)]
    specs: Vec<u8>,
    #[octopus(rename = "is_on")]
    on: bool,
}

fn columns(path: &std::path::Path, table: &str) -> Vec<(String, String, bool, bool)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(1)?,
            r.get(2)?,
            r.get::<_, i64>(3)? != 0,
            r.get::<_, i64>(5)? != 0,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_field_is_a_typed_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gadgets.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let _: Dao<Gadget> = Dao::open(Arc::new(Plan::new(store))).await.unwrap();
    let cols = columns(&path, "gadgets");
    let expect = [
        ("id", "TEXT", true, true),
        ("weight", "REAL", true, false),
        ("count", "INTEGER", true, false),
        ("blob", "BLOB", false, false),
        ("specs", "TEXT", true, false),
        ("is_on", "INTEGER", true, false),
    ];
    let got: Vec<(&str, &str, bool, bool)> = cols
        .iter()
        .map(|(n, t, nn, pk)| (n.as_str(), t.as_str(), *nn, *pk))
        .collect();
    assert_eq!(got, expect);
}

async fn open_against(create: &str) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("existing.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(create)
        .unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    Dao::<Gadget>::open(Arc::new(Plan::new(store)))
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_column_type_is_named() {
    let err = open_against(
        "CREATE TABLE gadgets (id TEXT PRIMARY KEY, weight TEXT NOT NULL, count INTEGER NOT NULL, \
         blob BLOB, specs TEXT NOT NULL, is_on INTEGER NOT NULL)",
    )
    .await;
    match &err {
        Error::SchemaMismatch {
            table: "gadgets",
            column,
            reason,
        } => {
            assert_eq!(column, "weight");
            assert!(reason.contains("REAL"), "{reason}");
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("`gadgets`") && err.to_string().contains("`weight`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_column_is_named() {
    let err =
        open_against("CREATE TABLE gadgets (id TEXT PRIMARY KEY, weight REAL NOT NULL)").await;
    assert!(
        matches!(&err, Error::SchemaMismatch { table: "gadgets", column, .. } if column == "count"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_extra_column_is_named() {
    let err = open_against(
        "CREATE TABLE gadgets (id TEXT PRIMARY KEY, weight REAL NOT NULL, count INTEGER NOT NULL, \
         blob BLOB, specs TEXT NOT NULL, is_on INTEGER NOT NULL, owner TEXT NOT NULL)",
    )
    .await;
    assert!(
        matches!(&err, Error::SchemaMismatch { column, .. } if column == "owner"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compatible_existing_table_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("again.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        let gadgets: Dao<Gadget> = Dao::open(Arc::new(Plan::new(store))).await.unwrap();
        let mut g = Gadget {
            id: "g".into(),
            weight: 1.5,
            count: 2,
            blob: None,
            specs: vec![1],
            on: true,
        };
        gadgets.create(&mut g).await.unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let gadgets: Dao<Gadget> = Dao::open(Arc::new(Plan::new(store))).await.unwrap();
    assert_eq!(gadgets.read("g").await.unwrap().unwrap().weight, 1.5);
}
