//! What happens to a write when the primary cannot take it.

use std::sync::Arc;

use tokio::sync::watch;

use crate::breaker::CircuitBreaker;
use crate::schema::Schema;
use crate::store::{BoxFuture, Store};
use crate::value::{Key, Record};
use crate::{Error, Result};

/// A write on its way to the primary, as a fallback receives it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Write {
    /// A create: insert a new row.
    Insert(Record),
    /// An update of an existing row, conditional on its version if given.
    Update {
        /// The new row.
        record: Record,
        /// The version the stored row must have.
        expected_version: Option<u64>,
    },
    /// A delete, conditional on the stored version if given.
    Delete {
        /// The key.
        key: Key,
        /// The version the stored row must have.
        expected_version: Option<u64>,
    },
}

impl Write {
    /// The row written, if the write carries one.
    pub fn record(&self) -> Option<&Record> {
        match self {
            Write::Insert(r) | Write::Update { record: r, .. } => Some(r),
            Write::Delete { .. } => None,
        }
    }
}

/// Which way an acknowledged write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// The primary has it.
    Primary,
    /// The primary was unavailable; the fallback recorded the write durably
    /// for replay, and the caches were set so reads see it.
    Journaled,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deletion {
    /// The primary had the row and deleted it.
    Deleted,
    /// The primary had no such row. Not an error: deletes can be retried and
    /// replayed safely.
    NotFound,
    /// The primary was unavailable; the delete was journaled for replay and
    /// the caches invalidated.
    Journaled,
}

impl Deletion {
    /// Whether a row was there: `None` when the delete was journaled and the
    /// primary could not say.
    pub fn existed(self) -> Option<bool> {
        match self {
            Deletion::Deleted => Some(true),
            Deletion::NotFound => Some(false),
            Deletion::Journaled => None,
        }
    }
}

/// Where a plan stands with its fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Nothing is pending: writes go to the primary.
    #[default]
    Healthy,
    /// Writes are being queued in the fallback; the primary is not (yet)
    /// taking them back.
    Journaling,
    /// The primary answers again and the fallback is replaying into it.
    Draining,
}

/// Counters of a durable fallback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FallbackStats {
    /// Entries queued and not yet applied or dead-lettered.
    pub pending: u64,
    /// Entries queued since the fallback was opened.
    pub appended: u64,
    /// Entries applied to the primary since it was opened.
    pub replayed: u64,
    /// Entries the primary refused at replay (their precondition no longer
    /// held, or a constraint refused them), kept as dead letters.
    pub dead_letters: u64,
    /// Why replay is held up, if it is (a model not opened in this process,
    /// a table that does not match its model, an I/O error).
    pub replay_error: Option<String>,
    /// Where the plan stands.
    pub mode: Mode,
}

/// A plan's cache levels, as its fallback sees them (see
/// [`Fallback::attach_caches`]).
pub trait CacheInvalidation: Send + Sync + 'static {
    /// Drops `keys` from every level, from the one nearest the primary to
    /// the front, leaving markers so fills based on earlier lookups fail.
    /// A level that fails has the key queued for retries (it never fails
    /// the caller).
    fn invalidate<'a>(&'a self, schema: &'static Schema, keys: &'a [Key]) -> BoxFuture<'a, ()>;
}

/// Takes the writes the primary cannot (its breaker is open, or it was
/// unavailable), and, for a durable fallback, gives them back to the primary
/// later. The default, [`FailFast`], returns the error; the journal
/// ([`crate::journal::Journal`]) queues writes durably and replays them.
///
/// A plan knows its fallback only through this trait: it asks whether a
/// key's writes must queue behind pending ones, what is pending for a key
/// (reads see pending writes), and hands over writes. Background work
/// (replay) belongs to the fallback: [`Fallback::attach`] starts it and
/// [`Fallback::close`] stops it.
pub trait Fallback: Send + Sync + 'static {
    /// Handles `write`, refused by the primary with `error` (always
    /// [`Error::Unavailable`]). `cached` is the row a cache level holds for
    /// the key, if one does: a durable fallback checks the write against it
    /// when nothing is pending for the key. Returns how the write was
    /// acknowledged, or an error for the caller.
    fn write<'a>(
        &'a self, schema: &'static Schema, write: &'a Write, cached: Option<&'a Record>,
        error: Error,
    ) -> BoxFuture<'a, Result<WriteOutcome>>;

    /// Starts serving the plan over `primary` (a durable fallback starts
    /// replaying into it). Fails if the fallback already serves another
    /// primary. The plan calls it once when it is built.
    fn attach(&self, primary: Arc<dyn Store>, breaker: Arc<CircuitBreaker>) -> Result<()> {
        let _ = (primary, breaker);
        Ok(())
    }

    /// Gives a durable fallback the plan's cache levels: once the primary
    /// holds a replayed key's state (or refused its entry), the fallback
    /// has them drop the key, so no cache keeps a row the primary does not
    /// hold (a journaled row replay refused, a row cached before a write
    /// whose cache step a crash skipped). The plan calls it once, when it
    /// is built with caches.
    fn attach_caches(&self, caches: Arc<dyn CacheInvalidation>) {
        let _ = caches;
    }

    /// Makes a model known, so pending writes of its table can be replayed.
    fn register(&self, schema: &'static Schema) {
        let _ = schema;
    }

    /// Whether anything is pending at all: a cheap check before
    /// [`Fallback::pending`].
    fn has_pending(&self) -> bool {
        false
    }

    /// Whether a write of `key` must go to the fallback even though the
    /// primary may answer: a pending write of the key must not be overtaken.
    /// The plan asks only while [`Fallback::has_pending`] holds. A fallback
    /// that cannot tell (its log does not answer) says `true`: queueing is
    /// the safe side.
    fn must_queue<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, bool> {
        let _ = (schema, key);
        Box::pin(std::future::ready(false))
    }

    /// The latest pending write of `key`: `Some(Some(row))` for a row,
    /// `Some(None)` for a delete, `None` when nothing is pending.
    fn pending<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Option<Record>>>> {
        let _ = (schema, key);
        Box::pin(async { Ok(None) })
    }

    /// Where the plan stands.
    fn mode(&self) -> Mode {
        Mode::Healthy
    }

    /// Changes of [`Fallback::mode`], as they happen.
    fn watch_mode(&self) -> watch::Receiver<Mode> {
        watch::channel(Mode::Healthy).1
    }

    /// Completes once nothing is pending.
    fn drained(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Counters, for a fallback that keeps any.
    fn stats(&self) -> Option<FallbackStats> {
        None
    }

    /// Asks background work to stop without waiting for it (a plan being
    /// dropped).
    fn detach(&self) {}

    /// Stops background work and releases what the fallback holds (a
    /// journal's directory lock) before it returns.
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// The default fallback: the write fails with the primary's
/// [`Error::Unavailable`].
#[derive(Debug, Default, Clone, Copy)]
pub struct FailFast;

impl Fallback for FailFast {
    fn write<'a>(
        &'a self, _schema: &'static Schema, _write: &'a Write, _cached: Option<&'a Record>,
        error: Error,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        Box::pin(async move { Err(error) })
    }
}
