//! The replay benchmarks' model and journal (MySQL in `replay.rs`,
//! PostgreSQL in `postgres.rs`): versioned, so every replayed entry is an
//! update conditional on its expected version.

use octopus::journal::{Journal, JournalOptions};
use octopus::{Model, Write};

/// The replayed model: versioned, so every entry is conditional.
#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "replay_rows")]
pub struct VersionedRow {
    #[octopus(key)]
    pub id: u64,
    pub name: String,
    pub value: i64,
    #[octopus(version)]
    pub version: u64,
}

impl VersionedRow {
    pub fn at(id: u64, version: u64) -> Self {
        VersionedRow {
            id,
            name: format!("row number {id} with a name of ordinary length"),
            // Every round changes the row, so the database really writes it.
            value: (id as i64) * 1000 + version as i64,
            version,
        }
    }
}

/// Entries per replayed journal.
pub const N: u64 = 20_000;

/// Rows per statement of the floor: the journal's default replay batch.
pub const FLOOR_ROWS: usize = 4000;

/// Journals N updates from `version` to `version + 1` (not timed).
pub async fn journal_updates(dir: &std::path::Path, version: u64) {
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let journal = journal.clone();
            tokio::spawn(async move {
                for id in (t..N).step_by(16) {
                    let write = Write::Update {
                        record: VersionedRow::at(id, version + 1).to_record().unwrap(),
                        expected_version: Some(version),
                    };
                    journal.append(VersionedRow::SCHEMA, &write).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    journal.close().await.unwrap();
}
