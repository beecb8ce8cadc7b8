//! Work done on one connection: reads by key, the conditional update, and
//! the changes of [`Store::apply`].

use std::collections::HashMap;

use octopus::{Change, Error, Key, Record, Result, Schema, check_key, key_of};
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::SqliteStore;
use super::sql::{self, KeyParam, Param, Statements};

pub(crate) fn get_one(
    conn: &Connection, schema: &'static Schema, st: &Statements, key: &Key,
) -> rusqlite::Result<Option<Record>> {
    conn.prepare_cached(&st.select)?
        .query_row([KeyParam(key)], |row| sql::read_row(schema, row))
        .optional()
}

/// Up to this many keys are looked up per statement.
const IN_CHUNK: usize = 500;

pub(crate) fn get_many(
    conn: &Connection, schema: &'static Schema, st: &Statements, keys: &[Key],
) -> rusqlite::Result<Vec<Option<Record>>> {
    let mut found: HashMap<Key, Record> = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(IN_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let text = format!("{} WHERE {} IN ({marks})", st.select_columns, st.key);
        let mut stmt = conn.prepare_cached(&text)?;
        let rows = stmt.query_map(params_from_iter(chunk.iter().map(KeyParam)), |row| {
            sql::read_row(schema, row)
        })?;
        for row in rows {
            let record = row?;
            if let Ok(k) = key_of(schema, &record) {
                found.insert(k, record);
            }
        }
    }
    Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
}

/// How a job on a connection failed: SQLite's error (classified later,
/// against the store's name) or Octopus' own.
pub(crate) type JobError = crate::failure::Failure<rusqlite::Error>;

impl From<rusqlite::Error> for JobError {
    fn from(e: rusqlite::Error) -> Self {
        JobError::Driver(e)
    }
}

pub(crate) fn update(
    conn: &Connection, schema: &'static Schema, st: &Statements, record: &Record,
    expected: Option<u64>,
) -> std::result::Result<(), JobError> {
    let key = key_of(schema, record).map_err(JobError::Octopus)?;
    let values = record.values().iter().map(Param);
    let changed = match (expected, schema.version_index()) {
        (Some(v), Some(_)) => {
            let expected = octopus::Value::UInt(v);
            let vi = schema.version_index().unwrap_or_default();
            let bound = if schema.columns()[vi].ty().is_signed_int() {
                octopus::Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
            } else {
                expected
            };
            conn.prepare_cached(&st.update_versioned)?
                .execute(params_from_iter(
                    values.chain(std::iter::once(Param(&bound))),
                ))?
        }
        _ => conn
            .prepare_cached(&st.update)?
            .execute(params_from_iter(values))?,
    };
    if changed > 0 {
        return Ok(());
    }
    let current: Option<i64> = conn
        .prepare_cached(&st.version_of)?
        .query_row([KeyParam(&key)], |r| r.get(0))
        .optional()?;
    Err(JobError::Octopus(match current {
        None => Error::not_found(schema.table(), key.to_string()),
        Some(actual) => Error::conflict(
            schema.table(),
            key.to_string(),
            expected.unwrap_or_default(),
            actual as u64,
        ),
    }))
}

/// What [`Store::apply`] refuses of a change before reading anything: a
/// key the table cannot hold, a row the store would refuse, or a row
/// whose key is not the change's.
pub(crate) fn check_change(
    store: &SqliteStore, schema: &'static Schema, change: &Change,
) -> Result<()> {
    change.check_for(store, schema, check_key).map(drop)
}

/// The changes of one [`Store::apply`] call, run as
/// one writer job (so inside one transaction): each change whose slot in
/// `out` is still `Ok` is read, checked against the stored row and written.
/// A change's refusal goes into its slot; an error that means the database
/// is unavailable fails the job, and the writer rolls all of it back.
pub(crate) fn apply(
    conn: &Connection, schema: &'static Schema, st: &Statements, store: &str, changes: &[Change],
    mut out: Vec<Result<()>>,
) -> Result<Vec<Result<()>>> {
    for (change, slot) in changes.iter().zip(out.iter_mut()) {
        if slot.is_ok() {
            *slot = apply_one(conn, schema, st, change).or_else(|e| {
                let error = sql::classify(store, e);
                match error {
                    Error::Unavailable { .. } => Err(error),
                    other => Ok(Err(rejected_change(schema, change, other))),
                }
            })?;
        }
    }
    Ok(out)
}

/// One change: `Ok(Err(_))` when its precondition does not hold.
fn apply_one(
    conn: &Connection, schema: &'static Schema, st: &Statements, change: &Change,
) -> rusqlite::Result<Result<()>> {
    let stored = get_one(conn, schema, st, &change.key)?;
    if let Err(refused) = change.check(schema, stored.as_ref()) {
        return Ok(Err(refused));
    }
    match &change.row {
        Some(row) => conn
            .prepare_cached(&st.upsert)?
            .execute(params_from_iter(row.values().iter().map(Param)))?,
        None => conn
            .prepare_cached(&st.delete)?
            .execute([KeyParam(&change.key)])?,
    };
    Ok(Ok(()))
}

/// A statement of one change failed (a constraint the table has beyond the
/// model's, say): the error names the table and key.
fn rejected_change(schema: &'static Schema, change: &Change, e: Error) -> Error {
    match e {
        Error::Rejected { store, message } => Error::Rejected {
            store,
            message: format!("table `{}`, key {}: {message}", schema.table(), change.key),
        },
        other => other,
    }
}
