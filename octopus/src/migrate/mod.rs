//! Copy-and-verify between two stores: moving a table from one database
//! to another (SQLite to PostgreSQL, say) without writing a line of SQL.
//!
//! A [`Migration`] copies a model's table in key order, in batches, from
//! one [`Store`] to another (creating the table in the target), and reports
//! each batch to a progress callback with the last key copied, so an
//! interrupted copy resumes after that key. [`Migration::verify`] then
//! reads both sides in key order and compares row counts and every row,
//! listing the first keys that differ.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use octopus::migrate::Migration;
//! use octopus::{MemoryStore, Model, Store};
//!
//! #[derive(Debug, Model)]
//! struct Note {
//!     #[octopus(key)]
//!     id: u64,
//!     text: String,
//! }
//!
//! let (from, to) = (MemoryStore::new(), MemoryStore::new());
//! from.ensure_schema(Note::SCHEMA).await?;
//! for id in 1..=3 {
//!     from.insert(Note::SCHEMA, &Note { id, text: "hi".into() }.to_record()?).await?;
//! }
//! let migration = Migration::new(&from, &to).batch(2);
//! let copied = migration.copy(Note::SCHEMA, None, &mut |p| println!("{} rows", p.rows)).await?;
//! assert_eq!(copied.rows, 3);
//! let verified = migration.verify(Note::SCHEMA).await?;
//! assert!(verified.matches(), "{verified:?}");
//! # Ok::<(), octopus::Error>(())
//! # }).unwrap();
//! ```
//!
//! Both stores must list their rows in the same key order (every store of
//! this project does: integers by value, text bytewise). Writes that reach
//! the source during a copy may or may not be copied: stop them (or let
//! the plan journal them) before the final copy and verify.

mod verify;

use std::time::{Duration, Instant};

use crate::schema::Schema;
use crate::store::{Store, key_of};
use crate::value::Key;
use crate::{Error, Result};

pub use verify::{Difference, Verified};

/// Copies and verifies tables from one store to another.
pub struct Migration<'a> {
    from: &'a dyn Store,
    to: &'a dyn Store,
    batch: usize,
}

/// Where a copy stands, after each batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The table.
    pub table: &'static str,
    /// Rows copied so far by this call (a resumed copy counts from 0).
    pub rows: u64,
    /// The last key copied: a copy resumed after it loses nothing.
    pub last_key: Option<Key>,
    /// Time since this call began.
    pub elapsed: Duration,
}

/// What a finished copy did.
#[derive(Debug, Clone, PartialEq)]
pub struct Copied {
    /// The table.
    pub table: &'static str,
    /// Rows copied by this call.
    pub rows: u64,
    /// The last key copied (`None`: nothing was copied).
    pub last_key: Option<Key>,
    /// How long it took.
    pub elapsed: Duration,
}

impl Copied {
    /// Rows per second.
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl<'a> Migration<'a> {
    /// A migration from `from` to `to`, in batches of 5,000 rows.
    pub fn new(from: &'a dyn Store, to: &'a dyn Store) -> Self {
        Migration {
            from,
            to,
            batch: 5_000,
        }
    }

    /// Rows per batch (at least 1).
    pub fn batch(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// Copies `schema`'s table, the rows with keys after `after` (all of
    /// them for `None`), creating the table in the target if it is
    /// missing (a target table whose columns do not fit is
    /// [`Error::SchemaMismatch`], and nothing is copied). Rows the target
    /// already holds are replaced. `progress` is called after each batch.
    /// The source's table is checked the same way ([`Store::ensure_schema`]),
    /// so a source without it gets an empty one and copies nothing.
    pub async fn copy(
        &self, schema: &'static Schema, after: Option<Key>, progress: &mut dyn FnMut(&Progress),
    ) -> Result<Copied> {
        let started = Instant::now();
        self.from.ensure_schema(schema).await?;
        self.to.ensure_schema(schema).await?;
        let mut last = after;
        let mut rows = 0u64;
        loop {
            let batch = self.from.scan(schema, last.as_ref(), self.batch).await?;
            let Some(tail) = batch.last() else { break };
            let tail = key_of(schema, tail)?;
            if last.as_ref().is_some_and(|l| *l >= tail) {
                return Err(Error::rejected(
                    self.from.name(),
                    format!(
                        "table `{}`: the scan after key {} returned key {tail}, not a later one; \
                         the store lists keys out of order",
                        schema.table(),
                        last.map_or_else(String::new, |k| k.to_string())
                    ),
                ));
            }
            self.to.upsert_many(schema, &batch).await?;
            rows += batch.len() as u64;
            last = Some(tail);
            progress(&Progress {
                table: schema.table(),
                rows,
                last_key: last.clone(),
                elapsed: started.elapsed(),
            });
            if batch.len() < self.batch {
                break;
            }
        }
        Ok(Copied {
            table: schema.table(),
            rows,
            last_key: last.filter(|_| rows > 0),
            elapsed: started.elapsed(),
        })
    }
}
