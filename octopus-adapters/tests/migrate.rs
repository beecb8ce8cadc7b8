//! Copy-and-verify across vendors (`octopus::migrate`): a table of the
//! quickstart's shape (UUID keys, nullable text, a JSON field, unsigned
//! and signed integers, floats, a version) goes SQLite → MySQL →
//! PostgreSQL → SQLite, verified at each hop, and arrives bit for bit; a
//! copy cancelled mid-way resumes after its last reported key; a row
//! altered behind the copy is reported by key.
#![cfg(all(feature = "sqlite", feature = "mysql", feature = "postgres"))]

use octopus::migrate::{Difference, Migration};
use octopus::{Key, Model, Store};
use octopus_adapters::sqlite::SqliteStore;
use octopus_test_support::mysql::mysql_store;
use octopus_test_support::postgres::postgres_store;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Shelf {
    room: String,
    row: u8,
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "books")]
struct Book {
    #[octopus(key)]
    id: uuid::Uuid,
    title: String,
    author: Option<String>,
    pages: u32,
    rating: f64,
    offset: i64,
    #[octopus(json)]
    shelf: Shelf,
    #[octopus(version)]
    version: u64,
}

octopus::models! {
    struct Library { books: Book }
}

const ROWS: u64 = 12_000;

fn book(n: u64) -> Book {
    Book {
        id: uuid::Uuid::from_u64_pair(n.wrapping_mul(0x9e37_79b9_7f4a_7c15), n),
        title: format!("Book {n} — «{}»", n % 97),
        author: (!n.is_multiple_of(3)).then(|| format!("Author {}", n % 41)),
        pages: (n % 900) as u32,
        rating: n as f64 / 7.0,
        offset: -(n as i64) * 1_000_003,
        shelf: Shelf {
            room: format!("R{}", n % 5),
            row: (n % 250) as u8,
        },
        version: n % 17 + 1,
    }
}

async fn seeded_sqlite(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(dir.join("books.db")).await.unwrap();
    store.ensure_schema(Book::SCHEMA).await.unwrap();
    let rows: Vec<_> = (0..ROWS).map(|n| book(n).to_record().unwrap()).collect();
    for chunk in rows.chunks(2_000) {
        store.upsert_many(Book::SCHEMA, chunk).await.unwrap();
    }
    store
}

/// Copies every table of the registry from `from` to `to` and verifies it.
async fn hop(from: &dyn Store, to: &dyn Store) {
    let migration = Migration::new(from, to).batch(1_000);
    for schema in Library::SCHEMAS {
        let mut reports = 0;
        let copied = migration
            .copy(schema, None, &mut |_| reports += 1)
            .await
            .unwrap();
        assert_eq!(copied.rows, ROWS, "{} → {}", from.name(), to.name());
        assert_eq!(
            reports,
            ROWS.div_ceil(1_000),
            "one progress report per batch"
        );
        let verified = migration.verify(schema).await.unwrap();
        assert!(
            verified.matches(),
            "{} → {}: {verified:?}",
            from.name(),
            to.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_goes_round_the_vendors_and_comes_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let origin = seeded_sqlite(dir.path()).await;
    let mysql = mysql_store("migrate_hops").await;
    let postgres = postgres_store("migrate_hops").await;
    let back = SqliteStore::open(dir.path().join("back.db")).await.unwrap();
    hop(&origin, &mysql).await;
    hop(&mysql, &postgres).await;
    hop(&postgres, &back).await;
    for n in [0, 1, 2, ROWS / 2, ROWS - 1] {
        let key = book(n).key();
        let row = back.get(Book::SCHEMA, &key).await.unwrap().unwrap();
        assert_eq!(Book::from_record(row).unwrap(), book(n));
    }
    let verified = Migration::new(&origin, &back)
        .verify(Book::SCHEMA)
        .await
        .unwrap();
    assert!(verified.matches(), "{verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_copy_resumes_after_its_last_reported_key() {
    let dir = tempfile::tempdir().unwrap();
    let origin = seeded_sqlite(dir.path()).await;
    let target = postgres_store("migrate_resume").await;
    let migration = Migration::new(&origin, &target).batch(1_000);
    // Batches reported so far, and the last key copied.
    let (tx, mut rx) = tokio::sync::watch::channel((0u64, None::<Key>));
    let mut reports = 0;
    let mut report = |p: &octopus::migrate::Progress| {
        reports += 1;
        tx.send_replace((reports, p.last_key.clone()));
    };
    let copy = migration.copy(Book::SCHEMA, None, &mut report);
    // The copy is cancelled (its future dropped) once three batches were
    // reported.
    tokio::select! {
        out = copy => panic!("the copy finished before it was cancelled: {out:?}"),
        seen = rx.wait_for(|(n, _)| *n >= 3) => { seen.unwrap(); }
    }
    let resume_after = rx.borrow().1.clone().expect("a batch was reported");
    let before = migration.verify(Book::SCHEMA).await.unwrap();
    assert!(!before.matches(), "the cancelled copy copied everything");
    let resumed = migration
        .copy(Book::SCHEMA, Some(resume_after), &mut |_| {})
        .await
        .unwrap();
    assert!(resumed.rows < ROWS, "the resumed copy started over");
    let verified = migration.verify(Book::SCHEMA).await.unwrap();
    assert!(verified.matches(), "{verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_keys_that_differ() {
    let dir = tempfile::tempdir().unwrap();
    let origin = seeded_sqlite(dir.path()).await;
    let target = mysql_store("migrate_verify").await;
    let migration = Migration::new(&origin, &target).batch(1_000);
    migration
        .copy(Book::SCHEMA, None, &mut |_| {})
        .await
        .unwrap();
    let mut altered = book(4_321);
    altered.pages += 1;
    target
        .upsert(Book::SCHEMA, &altered.to_record().unwrap())
        .await
        .unwrap();
    let gone = book(77).key();
    target.delete(Book::SCHEMA, &gone).await.unwrap();
    let verified = migration.verify(Book::SCHEMA).await.unwrap();
    assert!(!verified.matches());
    assert_eq!(verified.differences, 2, "{verified:?}");
    assert_eq!(
        (verified.source_rows, verified.target_rows),
        (ROWS, ROWS - 1)
    );
    assert!(
        verified
            .first
            .contains(&Difference::Differs(altered.key(), vec!["pages"])),
        "{verified:?}"
    );
    assert!(
        verified.first.contains(&Difference::Missing(gone)),
        "{verified:?}"
    );
}
