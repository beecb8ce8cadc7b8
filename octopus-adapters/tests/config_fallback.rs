//! A journal from config: `fallback = "file://…"` (or its environment
//! override) gives a configured plan the journal, so writes survive a
//! locked database and catch up by themselves; bad fallbacks are errors
//! naming them.
#![cfg(feature = "sqlite")]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use octopus::config::Config;
use octopus::{Error, Model, WriteOutcome};
use octopus_adapters::config::{open_fallback, plans};
use octopus_test_support::until_drained;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "stock")]
struct Stock {
    #[octopus(key)]
    sku: String,
    count: i64,
}

octopus::models! {
    struct Shop { stock: Stock }
}

fn rows(path: &Path) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT sku, count FROM stock").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A config over an SQLite file whose breaker opens fast; the journal is
/// set by the environment override, as a deployment would.
fn config(db: &Path, journal: &Path) -> Config {
    let text = format!(
        "[default]\nprimary = \"sqlite://{}?busy_timeout_ms=100\"\n\
         [default.breaker]\nwindow = 4\nminimum_calls = 2\nopen_wait = \"200ms\"\nhalf_open_calls = 1\n",
        db.display()
    );
    let vars = [(
        "OCTOPUS__DEFAULT__FALLBACK".to_owned(),
        format!("file://{}?durability=fsync", journal.display()),
    )];
    Config::from_toml_with_env(&text, "shop.toml", vars).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_from_config_takes_writes_while_the_database_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let shop = Shop::open(
        plans(&config(&db, &dir.path().join("journal")))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..5 {
        let mut s = Stock {
            sku: format!("s{i}"),
            count: i,
        };
        assert_eq!(
            shop.stock.create(&mut s).await.unwrap(),
            WriteOutcome::Primary
        );
        expected.insert(s.sku, s.count);
    }

    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 0..5 {
        let mut s = Stock {
            sku: format!("s{i}"),
            count: 100 + i,
        };
        assert_eq!(
            shop.stock.update(&mut s).await.unwrap(),
            WriteOutcome::Journaled
        );
        expected.insert(s.sku, s.count);
    }
    assert_eq!(shop.stock.read("s3").await.unwrap().unwrap().count, 103);
    assert!(
        dir.path().join("journal").is_dir(),
        "the journal is where the URL says"
    );

    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    until_drained(shop.stock.plan(), Duration::from_secs(10)).await;
    assert_eq!(rows(&db), expected, "the file caught up by itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fallbacks_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().display();
    for (url, says) in [
        ("s3://bucket/journal".to_owned(), "unknown fallback"),
        ("file://".to_owned(), "expected file://"),
        (
            format!("file://{at}/j?durability=sometimes"),
            "`durability` must be",
        ),
        (
            format!("file://{at}/j?durability=0s"),
            "`durability` must be",
        ),
        (format!("file://{at}/j?fsync=1"), "fsync"),
        (format!("file://{at}/j?segment_bytes=0"), "segment_bytes"),
        (format!("file://me:pw@{at}/j"), "no login"),
    ] {
        let err = open_fallback(&url)
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} opened"));
        let shown = err.to_string();
        assert!(shown.contains(says), "{url}: {shown}");
        assert!(!shown.contains("pw@"), "{url}: {shown}");
    }

    // One journal replays into one primary.
    let text = format!(
        "[default]\nprimary = \"sqlite://{at}/a.db\"\nfallback = \"file://{at}/j\"\n\
         [models.stock]\nprimary = \"sqlite://{at}/b.db\"\n"
    );
    let config = Config::from_toml(&text, "shop.toml").unwrap();
    let Err(err) = plans(&config).await else {
        panic!("two primaries, one journal: built");
    };
    assert!(
        matches!(&err, Error::Config { key, reason } if key == "models.stock.fallback" && reason.contains("default")),
        "{err:?}"
    );
    // A model with its own primary and its own journal is fine.
    let text = format!("{text}fallback = \"file://{at}/k\"\n");
    let config = Config::from_toml(&text, "shop.toml").unwrap();
    plans(&config).await.unwrap();
}
