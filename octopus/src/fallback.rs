//! What happens to a write when the primary cannot take it.

use crate::schema::Schema;
use crate::store::BoxFuture;
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
    /// A delete.
    Delete(Key),
}

impl Write {
    /// The row written, if the write carries one.
    pub fn record(&self) -> Option<&Record> {
        match self {
            Write::Insert(r) | Write::Update { record: r, .. } => Some(r),
            Write::Delete(_) => None,
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

/// Takes a write the primary could not (its breaker is open, or it was
/// unavailable). The default, [`FailFast`], returns the error; the journal
/// records the write for replay.
pub trait Fallback: Send + Sync + 'static {
    /// Handles `write`, refused by the primary with `error` (always
    /// [`Error::Unavailable`]). Returns how the write was acknowledged, or an
    /// error for the caller.
    fn write<'a>(
        &'a self,
        schema: &'static Schema,
        write: &'a Write,
        error: Error,
    ) -> BoxFuture<'a, Result<WriteOutcome>>;
}

/// The default fallback: the write fails with the primary's
/// [`Error::Unavailable`].
#[derive(Debug, Default, Clone, Copy)]
pub struct FailFast;

impl Fallback for FailFast {
    fn write<'a>(
        &'a self,
        _schema: &'static Schema,
        _write: &'a Write,
        error: Error,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        Box::pin(async move { Err(error) })
    }
}
