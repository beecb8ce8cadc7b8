//! Conditional changes: what journal replay asks of a primary, with the
//! primary's own semantics (create = insert, update and delete = only at the
//! expected version), checked and written atomically.

use crate::schema::Schema;
use crate::store::{Store, key_of, version_of};
use crate::value::{Key, Record};
use crate::{Error, Result};

/// What a change requires of the stored row before it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No row has the key (a create).
    Absent,
    /// A row has the key, whatever its version (an update of a model
    /// without a version field).
    Exists,
    /// A row has the key at exactly this version.
    Version(u64),
    /// No row has the key, or its version is below this one: entries of
    /// the journal's first format, which kept rows but no operation, never
    /// replace a newer row.
    OlderThan(u64),
    /// Nothing: the change applies whatever is stored (a delete whose
    /// writer knew no version; a first-format entry of an unversioned
    /// model).
    Always,
}

/// One key's change: check [`Precondition`] against the stored row, then
/// write `row` (`None`: delete the key).
///
/// A chain of journal entries of one key becomes one change: the first
/// entry's precondition and the last entry's row (each later entry was
/// checked against the one before it when it was written).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The row's key.
    pub key: Key,
    /// What the stored row must be for the change to apply.
    pub precondition: Precondition,
    /// The row to store, or `None` to delete it.
    pub row: Option<Record>,
}

impl Change {
    /// Refuses a change whose row carries another key than the change's
    /// (it would be checked against one row and written over another).
    pub fn check_row_key(&self, schema: &'static Schema) -> Result<()> {
        match &self.row {
            Some(row) => {
                let row_key = key_of(schema, row)?;
                if row_key == self.key {
                    Ok(())
                } else {
                    Err(Error::invalid(format!(
                        "table `{}`: the change of key {} carries a row with key {row_key}",
                        schema.table(),
                        self.key
                    )))
                }
            }
            None => Ok(()),
        }
    }

    /// What a store refuses of this change before reading anything: a key
    /// its `check_key` rule refuses, a row its [`Store::validate`] refuses,
    /// or a row that carries another key. Returns the row the change
    /// writes, if any.
    pub fn check_for<S: Store + ?Sized>(
        &self, store: &S, schema: &'static Schema,
        check_key: fn(&'static Schema, &Key) -> Result<()>,
    ) -> Result<Option<&Record>> {
        check_key(schema, &self.key)?;
        let Some(row) = &self.row else {
            return Ok(None);
        };
        store.validate(schema, row)?;
        self.check_row_key(schema)?;
        Ok(Some(row))
    }

    /// Checks the precondition against `stored` (the row the primary holds,
    /// read under the same lock as the write that follows): `Ok` if the
    /// change applies, otherwise the error the primary would have given a
    /// live write ([`Error::AlreadyExists`], [`Error::NotFound`],
    /// [`Error::Conflict`]).
    ///
    /// A change whose effect is already there (the stored row is exactly
    /// its row, or it deletes a key that holds nothing) passes whatever its
    /// precondition: replaying a batch again after a crash between applying
    /// it and checkpointing it is then harmless.
    pub fn check(&self, schema: &'static Schema, stored: Option<&Record>) -> Result<()> {
        if stored == self.row.as_ref() {
            return Ok(());
        }
        self.judge(schema, stored.map(|row| version_of(schema, row)))
    }

    /// [`check`](Self::check) from a locking read of the key and version
    /// alone: `stored` is `None` for an absent key, `Some(version)` for a
    /// present one (`Some(None)` where the model has no version column).
    ///
    /// `None` when that is not enough: the precondition fails, but the
    /// stored row may be this change's own row (already applied), which
    /// only the whole row shows. A store then reads the whole row and calls
    /// [`check`](Self::check).
    pub fn check_version(
        &self, schema: &'static Schema, stored: Option<Option<u64>>,
    ) -> Option<Result<()>> {
        match (stored, &self.row) {
            // A delete of a key that holds nothing: already applied.
            (None, None) => Some(Ok(())),
            (Some(version), Some(row)) if version_of(schema, row) == version => {
                match self.judge(schema, stored) {
                    Ok(()) => Some(Ok(())),
                    Err(_) => None,
                }
            }
            _ => Some(self.judge(schema, stored)),
        }
    }

    /// The precondition against the stored row's presence and version.
    fn judge(&self, schema: &'static Schema, stored: Option<Option<u64>>) -> Result<()> {
        let key = || self.key.to_string();
        match (self.precondition, stored) {
            (Precondition::Always, _) => Ok(()),
            (Precondition::Absent | Precondition::OlderThan(_), None) => Ok(()),
            (Precondition::OlderThan(v), Some(version)) => match version {
                Some(actual) if actual >= v => Err(Error::Conflict {
                    table: schema.table(),
                    key: key(),
                    expected: v.saturating_sub(1),
                    actual,
                }),
                _ => Ok(()),
            },
            (Precondition::Absent, Some(_)) => Err(Error::already_exists(schema.table(), key())),
            (Precondition::Exists | Precondition::Version(_), None) => {
                Err(Error::not_found(schema.table(), key()))
            }
            (Precondition::Exists, Some(_)) => Ok(()),
            (Precondition::Version(expected), Some(version)) => match version {
                Some(actual) if actual == expected => Ok(()),
                // A model without a version column has nothing to compare.
                None => Ok(()),
                Some(actual) => Err(Error::Conflict {
                    table: schema.table(),
                    key: key(),
                    expected,
                    actual,
                }),
            },
        }
    }
}

/// The default [`Store::apply`]: each change read, checked and written in
/// turn, with the store's own `insert` (the key was absent), `update` (it
/// was there) or `delete`, never an upsert that could land on another row.
/// Atomic only against writers that go through this process's store one at
/// a time; stores with transactions override it.
pub(crate) async fn apply_one_by_one<S: Store + ?Sized>(
    store: &S, schema: &'static Schema, changes: &[Change],
) -> Result<Vec<Result<()>>> {
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        if let Err(refused) = change.check_row_key(schema) {
            out.push(Err(refused));
            continue;
        }
        let stored = store.get(schema, &change.key).await?;
        if let Err(refused) = change.check(schema, stored.as_ref()) {
            out.push(Err(refused));
            continue;
        }
        let written = match (&change.row, &stored) {
            _ if stored.as_ref() == change.row.as_ref() => Ok(()),
            (Some(row), None) => store.insert(schema, row).await,
            (Some(row), Some(_)) => store.update(schema, row, None).await,
            (None, _) => store.delete(schema, &change.key).await.map(drop),
        };
        match written {
            Err(e) if e.is_unavailable() => return Err(e),
            other => out.push(other),
        }
    }
    Ok(out)
}
