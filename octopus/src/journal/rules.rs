//! The journal as a plan's fallback: what a write is checked against when it
//! is journaled, and the [`Fallback`] implementation.
//!
//! A journaled write is checked as strictly as can be known during an
//! outage, under its key's lock (held until the entry is in the pending
//! index, so the check and the append are one step):
//!
//! | write | the key's latest pending entry (or cached row) | outcome |
//! |---|---|---|
//! | create | a row | [`Error::AlreadyExists`] |
//! | update | a delete | [`Error::NotFound`] |
//! | update at version *v* | a row at another version | [`Error::Conflict`] |
//! | delete | a row at version *v* | journaled as "delete at *v*" |
//! | anything | nothing known | journaled; checked by the primary at replay |
//!
//! A pending entry always wins over a cached row (it is newer).

use std::sync::Arc;

use tokio::sync::watch;

use super::Journal;
use super::entry::Intent;
use super::index::Pending;
use crate::breaker::CircuitBreaker;
use crate::fallback::{CacheInvalidation, Fallback, FallbackStats, Mode, Write, WriteOutcome};
use crate::schema::Schema;
use crate::store::{BoxFuture, Store, key_of, version_of};
use crate::value::{Key, Record};
use crate::{Error, Result};

/// What is known of a key's current row during an outage.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// The latest pending entry (or a cache) holds this row.
    Row(Record),
    /// The latest pending entry deletes the key.
    Absent,
    /// Nothing is known: the primary checks the write at replay.
    Unknown,
}

/// The entry to journal for `write` of `key`, given what is `known` of
/// the key's row, or the error a live write would meet (see the table in
/// the module docs of [`crate::journal`]'s fallback).
pub fn check<'a>(
    schema: &'static Schema, key: &Key, write: &'a Write, known: &Known,
) -> Result<Intent<'a>> {
    let table = schema.table();
    match write {
        Write::Insert(r) => match known {
            Known::Row(_) => Err(Error::AlreadyExists {
                table,
                key: key.to_string(),
            }),
            _ => Ok(Intent::Create(r)),
        },
        Write::Update {
            record,
            expected_version,
        } => {
            match known {
                Known::Absent => {
                    return Err(Error::NotFound {
                        table,
                        key: key.to_string(),
                    });
                }
                Known::Row(current) => conflict(schema, key, *expected_version, current)?,
                Known::Unknown => {}
            }
            Ok(Intent::Update(record, *expected_version))
        }
        Write::Delete {
            expected_version, ..
        } => {
            let expect = match known {
                Known::Row(current) => {
                    conflict(schema, key, *expected_version, current)?;
                    expected_version.or_else(|| version_of(schema, current))
                }
                _ => *expected_version,
            };
            Ok(Intent::Delete(expect))
        }
    }
}

fn conflict(
    schema: &'static Schema, key: &Key, expected: Option<u64>, current: &Record,
) -> Result<()> {
    match (expected, version_of(schema, current)) {
        (Some(expected), Some(actual)) if expected != actual => Err(Error::Conflict {
            table: schema.table(),
            key: key.to_string(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

impl Journal {
    /// Checks `write` against the key's pending entry (or `cached`) and
    /// appends it, as one step under the key's lock.
    async fn append_checked(
        &self, schema: &'static Schema, write: &Write, cached: Option<&Record>,
    ) -> Result<u64> {
        let key = match write {
            Write::Insert(r) | Write::Update { record: r, .. } => key_of(schema, r)?,
            Write::Delete { key, .. } => key.clone(),
        };
        let ikey = self.shared.index.key(schema.table(), &key);
        let guard = self.shared.locks.lock(&ikey).await;
        let position = self.shared.index.get(&ikey);
        let known = match position.map(|p| self.read_pending(schema, p)).transpose()? {
            Some(Some(Pending::Put(row))) => Known::Row(row),
            Some(Some(Pending::Deleted)) => Known::Absent,
            // Replay applied the pending entry a moment ago: the cache may
            // still hold the row from before it.
            Some(None) => Known::Unknown,
            None => cached.map_or(Known::Unknown, |r| Known::Row(r.clone())),
        };
        let after = position.map(|p| p.seq());
        let intent = check(schema, &key, write, &known)?;
        self.append_intent(schema, &key, (intent, after), Some(guard))
            .await
    }
}

/// The journal as a plan's fallback: writes the primary cannot take are
/// checked (see the module docs), appended durably, and acknowledged as
/// [`WriteOutcome::Journaled`]; the replayer started by `attach` applies
/// them when the primary answers again, conditionally, and dead-letters
/// what the primary refuses.
impl Fallback for Journal {
    fn write<'a>(
        &'a self, schema: &'static Schema, write: &'a Write, cached: Option<&'a Record>,
        _error: Error,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        Box::pin(async move {
            self.append_checked(schema, write, cached).await?;
            Ok(WriteOutcome::Journaled)
        })
    }

    fn attach(&self, primary: Arc<dyn Store>, breaker: Arc<CircuitBreaker>) -> Result<()> {
        self.start_replayer(primary, breaker)
    }

    fn attach_caches(&self, caches: Arc<dyn CacheInvalidation>) {
        self.shared
            .caches
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(caches.clone());
        let registered: Vec<&'static Schema> = self
            .shared
            .schemas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .copied()
            .collect();
        for schema in registered {
            self.invalidate_pending(schema, vec![caches.clone()]);
        }
    }

    fn register(&self, schema: &'static Schema) {
        Journal::register(self, schema);
    }

    fn has_pending(&self) -> bool {
        self.pending() > 0
    }

    fn must_queue<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(self.has_pending_key(schema, key)))
    }

    fn pending<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Option<Record>>>> {
        let found = self.lookup(schema, key).map(|p| {
            p.map(|p| match p {
                Pending::Put(r) => Some(r),
                Pending::Deleted => None,
            })
        });
        Box::pin(async move { found })
    }

    fn mode(&self) -> Mode {
        Journal::mode(self)
    }

    fn watch_mode(&self) -> watch::Receiver<Mode> {
        Journal::watch_mode(self)
    }

    fn drained(&self) -> BoxFuture<'_, ()> {
        Box::pin(Journal::drained(self))
    }

    fn stats(&self) -> Option<FallbackStats> {
        Some(Journal::stats(self))
    }

    fn detach(&self) {
        self.signal_replayer_stop();
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Journal::close(self))
    }
}
