//! No read reaches a SQLite table whose shape was never checked: a plan
//! with a journal that opened while the database was locked checks the
//! table before its first primary read, and SQLite never reads a missing
//! column's quoted name as a string (double-quoted string literals are off).
#![cfg(feature = "sqlite")]

use std::sync::Arc;
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions};
use octopus::{Dao, Error, Key, Model, Plan, Store};
use octopus_adapters::sqlite::{SqliteOptions, SqliteStore};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "notes")]
struct Note {
    #[octopus(key)]
    id: i64,
    title: String,
    note: String,
}

/// A `notes` table without the model's `note` column, holding row 1.
fn older_table(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL) STRICT;
         INSERT INTO notes VALUES (1, 'groceries');",
    )
    .unwrap();
}

fn names_the_column(e: &Error) -> bool {
    let text = e.to_string();
    text.contains("notes") && text.contains("note")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_column_is_an_error_never_its_name_as_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.db");
    older_table(&db);
    let store = SqliteStore::open(&db).await.unwrap();
    // Straight to the store, skipping `ensure_schema`.
    match store.get(Note::SCHEMA, &Key::Int(1)).await {
        Err(e) => assert!(names_the_column(&e), "{e}"),
        Ok(row) => panic!("a read of a missing column returned {row:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_opened_while_the_database_was_locked_checks_before_its_first_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.db");
    older_table(&db);
    let store = SqliteStore::open_with(
        &db,
        SqliteOptions::default().busy_timeout(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let journal = Journal::open(dir.path().join("journal"), JournalOptions::default()).unwrap();
    let plan = Arc::new(
        Plan::builder(Arc::new(store))
            .journal(journal)
            .build()
            .unwrap(),
    );

    // Another process holds the database while the application starts.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let notes: Dao<Note> = Dao::open(plan.clone())
        .await
        .expect("with a journal, the application starts while the primary is down");
    locker.execute_batch("COMMIT").unwrap();
    drop(locker);

    // The plan checks the table first: the mismatch, not a failed SELECT.
    match notes.read(&Key::Int(1)).await {
        Err(Error::SchemaMismatch { table, column, .. }) => {
            assert_eq!((table, column.as_str()), ("notes", "note"));
        }
        other => panic!("the first read after the lock returned {other:?}"),
    }
    // So is a write's.
    let mut second = Note {
        id: 2,
        title: "errands".into(),
        note: "post office".into(),
    };
    match notes.create(&mut second).await {
        Err(Error::SchemaMismatch { table: "notes", .. }) => {}
        other => panic!("a write to the unchecked table gave {other:?}"),
    }
    plan.close().await.unwrap();
}
