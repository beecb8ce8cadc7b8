//! The one backend trait, [`Store`].

use std::future::Future;
use std::pin::Pin;

use crate::change::Change;
use crate::schema::{ColumnType, Schema};
use crate::value::{Key, Record, Value};
use crate::{Error, Result};

/// A boxed, `Send` future: what [`Store`] methods return so the trait stays
/// object-safe (`Box<dyn Store>` and `Arc<dyn Store>` work).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend: a database that can be a primary, or a cache.
///
/// Every method receives the model's `'static` [`Schema`]; records are in
/// schema order. The contract every store meets (checked by the conformance
/// suite in `octopus-adapters`):
///
/// - `insert` fails with [`Error::AlreadyExists`] when the key exists, and
///   writes nothing;
/// - `update` fails with [`Error::NotFound`] when the key is missing; with
///   `expected_version` it writes only if the stored version equals it, and
///   fails with [`Error::Conflict`] otherwise. It never changes the
///   `created_at` column;
/// - `upsert` inserts or replaces the whole row;
/// - `delete` returns whether a row was there (a missing key is not an error);
/// - `scan` returns up to `limit` rows with keys greater than `after`, in key
///   order;
/// - errors are classified: [`Error::Unavailable`] only when the backend could
///   not be reached or answer in time, never for bad input.
///
/// Implementations must not block the async executor's worker threads on
/// anything slow (network, fsync, lock waits).
pub trait Store: Send + Sync + 'static {
    /// A name for logs and errors (a URL without credentials).
    fn name(&self) -> &str;

    /// Creates the model's table if it does not exist; fails with
    /// [`Error::SchemaMismatch`] if it exists with columns the model cannot
    /// use.
    fn ensure_schema<'a>(&'a self, schema: &'static Schema) -> BoxFuture<'a, Result<()>>;

    /// The row with `key`, if any.
    fn get<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>>;

    /// The rows with `keys`, one slot per key in the same order.
    fn get_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>>;

    /// Inserts a new row; [`Error::AlreadyExists`] if the key exists.
    fn insert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>>;

    /// Inserts or replaces a row.
    fn upsert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>>;

    /// Inserts or replaces many rows. Stores that can do it in fewer round
    /// trips override this (MySQL: one statement per batch; SQLite: one
    /// transaction); the default upserts one by one.
    fn upsert_many<'a>(
        &'a self, schema: &'static Schema, records: &'a [Record],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(one_by_one(records, move |r| self.upsert(schema, r)))
    }

    /// Deletes the rows with `keys`. Stores that can do it in one round trip
    /// override this (MySQL: one statement); the default deletes one by one.
    fn delete_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(one_by_one(keys, move |k| async move {
            self.delete(schema, k).await.map(drop)
        }))
    }

    /// Replaces an existing row (all columns but the key and `created_at`),
    /// optionally only if its stored version equals `expected_version`.
    fn update<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<()>>;

    /// Deletes the row with `key`; returns whether it existed.
    fn delete<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<bool>>;

    /// Checks `record` as this store would check it on a write, without
    /// writing: what a fallback calls before it acknowledges a write the
    /// store could not take, so a value the store would refuse (NaN where
    /// it has no NaN, a key longer than its key column) is refused at once
    /// with the store's own error instead of being queued. The default is
    /// [`check_record`]; stores with stricter rules override it.
    fn validate(&self, schema: &'static Schema, record: &Record) -> Result<()> {
        check_record(schema, record)
    }

    /// Applies `changes` (one per key) with the store's own semantics, each
    /// checked against the stored row and written atomically against every
    /// other writer: journal replay.
    ///
    /// `Ok` holds one result per change, in order: `Ok(())` if it was
    /// written, or the refusal a live write would have met
    /// ([`Error::AlreadyExists`], [`Error::NotFound`], [`Error::Conflict`])
    /// or a per-row [`Error::Rejected`] / [`Error::Invalid`]. `Err` means
    /// nothing was written: [`Error::Unavailable`] (retry later) or a
    /// rejection of the batch as a whole (a constraint, a statement too
    /// large), which the caller narrows down by splitting the batch.
    ///
    /// The default reads, checks and writes each change in turn (atomic
    /// only within this process); SQL stores override it with one
    /// transaction that locks the rows it checks.
    fn apply<'a>(
        &'a self, schema: &'static Schema, changes: &'a [Change],
    ) -> BoxFuture<'a, Result<Vec<Result<()>>>> {
        Box::pin(crate::change::apply_one_by_one(self, schema, changes))
    }

    /// Up to `limit` rows with keys after `after`, in key order (for
    /// migration and journal replay, not as a query language).
    fn scan<'a>(
        &'a self, schema: &'static Schema, after: Option<&'a Key>, limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>>;
}

/// Runs `op` on each item in turn, stopping at the first error: the
/// default of the batch methods.
async fn one_by_one<'a, T, F, Fut>(items: &'a [T], op: F) -> Result<()>
where
    F: Fn(&'a T) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    for item in items {
        op(item).await?;
    }
    Ok(())
}

/// Checks that `record` fits `schema`: the right number of values, NULL only
/// in nullable columns, each value of its column's storage class. Stores call
/// it before writing, so a malformed record is refused with a message naming
/// the table and column, and nothing is written.
pub fn check_record(schema: &'static Schema, record: &Record) -> Result<()> {
    let columns = schema.columns();
    if record.len() != columns.len() {
        return Err(Error::invalid(format!(
            "table `{}`: record has {} values, the table has {} columns",
            schema.table(),
            record.len(),
            columns.len()
        )));
    }
    for (column, value) in columns.iter().zip(record.values()) {
        let ok = match (column.ty(), value) {
            (_, Value::Null) => column.nullable(),
            (ColumnType::Bool, Value::Bool(_)) => true,
            (t, Value::Int(_)) if t.is_signed_int() => true,
            (t, Value::UInt(_)) if t.is_unsigned_int() => true,
            (ColumnType::F32 | ColumnType::F64, Value::Float(_)) => true,
            (ColumnType::Text | ColumnType::Uuid | ColumnType::Json, Value::Text(_)) => true,
            (ColumnType::Bytes, Value::Bytes(_)) => true,
            _ => false,
        };
        if !ok {
            return Err(Error::invalid(format!(
                "table `{}`, column `{}`: a {} value does not fit a {}{} column",
                schema.table(),
                column.name(),
                value.kind(),
                if column.nullable() { "nullable " } else { "" },
                column.ty().name()
            )));
        }
    }
    key_of(schema, record).map(|_| ())
}

/// The key of `record` under `schema`.
pub fn key_of(schema: &'static Schema, record: &Record) -> Result<Key> {
    record
        .get(schema.key_index())
        .and_then(Key::from_value)
        .ok_or_else(|| {
            Error::invalid(format!(
                "table `{}`: key column `{}` holds no usable key",
                schema.table(),
                schema.key_column().name()
            ))
        })
}

/// The version stored in `record`, if the schema has a version column.
pub fn version_of(schema: &'static Schema, record: &Record) -> Option<u64> {
    let index = schema.version_index()?;
    match record.get(index)? {
        Value::Int(i) => Some(u64::try_from(*i).unwrap_or(0)),
        Value::UInt(u) => Some(*u),
        _ => None,
    }
}

/// Checks that `key` has the storage class of the schema's key column, so a
/// string key is never looked up in an integer-keyed table.
pub fn check_key(schema: &'static Schema, key: &Key) -> Result<()> {
    let ty = schema.key_column().ty();
    let ok = match key {
        Key::Int(_) => ty.is_signed_int(),
        Key::UInt(_) => ty.is_unsigned_int(),
        Key::Text(_) => matches!(ty, ColumnType::Text | ColumnType::Uuid),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "table `{}`: key {key} does not fit key column `{}` of type {}",
            schema.table(),
            schema.key_column().name(),
            ty.name()
        )))
    }
}

/// `key` converted to the integer signedness of the schema's key column where
/// the value allows (so `dao.read(5)` works for a `u64` key), then checked
/// with [`check_key`].
pub fn normalize_key(schema: &'static Schema, key: Key) -> Result<Key> {
    let ty = schema.key_column().ty();
    let key = match key {
        Key::Int(i) if ty.is_unsigned_int() && i >= 0 => Key::UInt(i as u64),
        Key::UInt(u) if ty.is_signed_int() && i64::try_from(u).is_ok() => Key::Int(u as i64),
        other => other,
    };
    check_key(schema, &key)?;
    Ok(key)
}
