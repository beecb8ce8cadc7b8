//! Floats written during an outage reach the primary with every bit once the
//! journal drains: random f64 and f32 values, the extremes (f32::MAX, which
//! a value parsed 1 ulp too high would push out of MySQL's FLOAT range),
//! subnormals, into SQLite and MySQL. Negative zero comes back as `0.0`
//! from both databases (documented), never as anything else.
#![cfg(all(feature = "sqlite", feature = "mysql"))]

use std::sync::Arc;
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions};
use octopus::{Dao, Key, Model, Plan, Store, Write};
use octopus_adapters::mysql::MysqlStore;
use octopus_adapters::sqlite::SqliteStore;
use octopus_test_support::bit_patterns;
use octopus_test_support::mysql::fresh_database;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "readings")]
struct Reading {
    #[octopus(key)]
    id: u64,
    wide: f64,
    narrow: f32,
}

fn readings() -> Vec<Reading> {
    let edges = [
        (f64::MAX, f32::MAX),
        (f64::MIN, f32::MIN),
        (f64::MIN_POSITIVE, f32::MIN_POSITIVE),
        (f64::from_bits(1), f32::from_bits(1)),
        (0.1, 0.1),
        (-0.0, -0.0),
    ];
    let random = bit_patterns(11)
        .map(|bits| (f64::from_bits(bits), f32::from_bits((bits >> 17) as u32)))
        .filter(|(w, n)| w.is_finite() && n.is_finite())
        .take(400);
    edges
        .into_iter()
        .chain(random)
        .enumerate()
        .map(|(i, (wide, narrow))| Reading {
            id: i as u64,
            wide,
            narrow,
        })
        .collect()
}

/// Journals every reading (the primary never sees them), reopens the
/// journal behind a plan over `primary`, waits for the drain, and returns
/// the readings whose stored floats differ in any bit.
async fn through_the_journal(primary: Arc<dyn Store>) -> Vec<(Reading, Option<Reading>)> {
    let dir = tempfile::tempdir().unwrap();
    let readings = readings();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    for r in &readings {
        let write = Write::Insert(r.to_record().unwrap());
        journal.append(Reading::SCHEMA, &write).await.unwrap();
    }
    journal.close().await.unwrap();

    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let plan = Arc::new(
        Plan::builder(primary.clone())
            .journal(journal.clone())
            .build()
            .unwrap(),
    );
    let _dao: Dao<Reading> = Dao::new(plan.clone());
    if tokio::time::timeout(Duration::from_secs(30), plan.drained())
        .await
        .is_err()
    {
        panic!("the journal did not drain: {:?}", plan.stats());
    }
    let stats = journal.stats();
    assert_eq!(
        (stats.replayed, stats.dead_letters),
        (readings.len() as u64, 0),
        "every reading is applied: {:?}",
        journal.dead_letters()
    );
    plan.close().await.unwrap();
    let mut off = Vec::new();
    for r in readings {
        let back = primary
            .get(Reading::SCHEMA, &Key::UInt(r.id))
            .await
            .unwrap()
            .map(|row| Reading::from_record(row).unwrap());
        let same = back.as_ref().is_some_and(|b| {
            same_bits(b.wide, r.wide) && same_bits(f64::from(b.narrow), f64::from(r.narrow))
        });
        if !same {
            off.push((r, back));
        }
    }
    off
}

/// Every bit, except that both databases store `-0.0` as `0.0`.
fn same_bits(stored: f64, written: f64) -> bool {
    let expected = if written == 0.0 { 0.0 } else { written };
    stored.to_bits() == expected.to_bits()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_receives_every_bit_of_journaled_floats() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("readings.db"))
        .await
        .unwrap();
    let off = through_the_journal(Arc::new(store)).await;
    assert!(off.is_empty(), "{} readings changed: {off:?}", off.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_receives_every_bit_of_journaled_floats() {
    let store = MysqlStore::new(&fresh_database("journal_values").await).unwrap();
    let off = through_the_journal(Arc::new(store)).await;
    assert!(off.is_empty(), "{} readings changed: {off:?}", off.len());
}
