//! The batch writes: [`Store::apply`] (journal replay) and `upsert_many`.
//!
//! `apply` runs one transaction on one connection, within the call's
//! deadline:
//!
//! 1. `BEGIN` at `READ COMMITTED`;
//! 2. `SELECT key, version … WHERE key = ANY($1) FOR UPDATE`: the present
//!    keys are locked until the end;
//! 3. each change is checked ([`Change::check_version`]) against the stored
//!    version, or against the change of the same key before it in the
//!    batch; the few that only the whole row decides are checked against
//!    it, read by a second locking `SELECT` of every column (a `jsonb`
//!    column's text, normalized by the server, counts as the change's when
//!    both hold the same JSON);
//! 4. the passing changes written: `INSERT` of the rows whose key was
//!    absent, `INSERT … ON CONFLICT DO UPDATE` of the present ones,
//!    `DELETE … WHERE key = ANY($1)` of the present keys deleted;
//! 5. `COMMIT`, if a margin of the deadline is left for it.
//!
//! PostgreSQL locks no gap: a key absent at step 2 can be created by
//! another writer before step 4. The plain `INSERT` then fails on the
//! primary key, which rolls the transaction back, and it runs again (three
//! attempts in all), now seeing the key. A deadlock, serialization failure
//! or lock timeout runs it again the same way; any other failed statement
//! rolls back and refuses the whole call, so the caller can split the
//! batch to find the change at fault.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use octopus::{Change, Error, Key, Record, Result, Schema, Store, Value, key_of};

use super::call::{Access, Conn, Failure};
use super::sql::Statements;
use super::values::{self, KeyParam, Param};
use super::{PostgresStore, check_pg_key, error, refs};
use crate::checked::{Stored, evaluate};

/// PostgreSQL's limit on the parameters of one statement.
const MAX_PARAMS: usize = 65_535;

/// The most rows one multi-row statement carries: larger batches run as
/// several statements, each of a power-of-two size, so a connection
/// prepares a handful of statement texts per table, not one per size.
const MAX_ROWS: usize = 512;

/// The row counts of the statements that write `total` rows of `columns`
/// values each.
fn runs(total: usize, columns: usize) -> Vec<usize> {
    let most = (MAX_PARAMS / columns.max(1)).clamp(1, MAX_ROWS);
    let mut left = total;
    let mut out = Vec::new();
    while left > 0 {
        let n = if left >= most {
            most
        } else {
            1 << (usize::BITS - 1 - left.leading_zeros())
        };
        out.push(n);
        left -= n;
    }
    out
}

/// Writes `rows` with `text(n)` statements of `n` rows each (see [`runs`]).
async fn write_rows(
    conn: &mut Conn, st: &Statements, rows: &[&Record], text: impl Fn(usize) -> Arc<str>,
) -> std::result::Result<(), tokio_postgres::Error> {
    let mut at = 0;
    for n in runs(rows.len(), st.columns) {
        let params: Vec<Param<'_>> = rows[at..at + n]
            .iter()
            .flat_map(|r| r.values().iter().map(Param))
            .collect();
        conn.execute(&text(n), &refs(&params)).await?;
        at += n;
    }
    Ok(())
}

/// Upserts `records` (the last one per key), in one transaction when it
/// takes more than one statement.
pub(super) async fn upsert_many(
    store: &PostgresStore, schema: &'static Schema, records: &[Record],
) -> Result<()> {
    records.iter().try_for_each(|r| store.validate(schema, r))?;
    // One statement may not update a row twice: the last record per key.
    let mut last: HashMap<Key, usize> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        last.insert(key_of(schema, r)?, i);
    }
    let mut order: Vec<usize> = last.into_values().collect();
    order.sort_unstable();
    let rows: Vec<&Record> = order.iter().map(|&i| &records[i]).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let st = store.statements(schema);
    let (st, rows) = (&st, &rows[..]);
    if runs(rows.len(), st.columns).len() == 1 {
        return store
            .call(Access::Write, |mut conn, _| async move {
                write_rows(&mut conn, st, rows, |n| st.upsert_rows(n)).await
            })
            .await;
    }
    store
        .call(Access::Transaction, |mut conn, until| async move {
            conn.begin().await?;
            let written = write_rows(&mut conn, st, rows, |n| st.upsert_rows(n)).await;
            finish(store, &mut conn, until, written.map_err(Failure::from)).await
        })
        .await
}

/// Commits if `outcome` is `Ok` and a margin of the deadline is left;
/// otherwise rolls back.
async fn finish<T>(
    store: &PostgresStore, conn: &mut Conn, until: Instant,
    outcome: std::result::Result<T, Failure>,
) -> std::result::Result<T, Failure> {
    match outcome {
        Ok(v) if store.inner.limits.room_for_commit(until) => {
            conn.commit().await?;
            Ok(v)
        }
        Ok(_) => {
            conn.rollback().await;
            Err(Failure::Octopus(
                store.no_time(until, "commit; rolled back"),
            ))
        }
        Err(e) => {
            conn.rollback().await;
            Err(e)
        }
    }
}

/// A batch of changes, as the transaction sees it.
struct Batch<'b> {
    schema: &'static Schema,
    st: &'b Statements,
    changes: &'b [Change],
    /// The changes that passed the checks made without the database.
    todo: &'b [usize],
    primary_key: &'b str,
}

/// See the module docs.
pub(super) async fn apply(
    store: &PostgresStore, schema: &'static Schema, changes: &[Change],
) -> Result<Vec<Result<()>>> {
    let mut out: Vec<Result<()>> = changes
        .iter()
        .map(|c| c.check_for(store, schema, check_pg_key).map(drop))
        .collect();
    let todo: Vec<usize> = (0..changes.len()).filter(|&i| out[i].is_ok()).collect();
    if todo.is_empty() {
        return Ok(out);
    }
    let st = store.statements(schema);
    let primary_key = store.primary_key(schema);
    let batch = &Batch {
        schema,
        st: &st,
        changes,
        todo: &todo,
        primary_key: &primary_key,
    };
    let name = store.name();
    let outcomes = store
        .call_with(
            Access::Transaction,
            |mut conn, until| async move {
                conn.begin().await?;
                let outcomes = checked_writes(&mut conn, batch).await;
                finish(store, &mut conn, until, outcomes).await
            },
            // A key created since the locking read: the next attempt
            // locks it.
            |e| error::is_rolled_back(e) || error::is_duplicate_key(e, &primary_key),
            |e| batch_refused(name, batch, e),
        )
        .await?;
    for (&i, outcome) in todo.iter().zip(outcomes) {
        out[i] = outcome;
    }
    Ok(out)
}

/// A failed statement refuses the batch; the error names the table. A
/// duplicate of the primary key (a key created since the locking read, on
/// the last attempt) is reported as such.
fn batch_refused(store: &str, batch: &Batch<'_>, e: tokio_postgres::Error) -> Error {
    let pk_clash = error::is_duplicate_key(&e, batch.primary_key);
    match error::classify(store, e) {
        Error::Rejected { .. } if pk_clash => Error::unavailable(
            store,
            format!(
                "table `{}`: keys of the batch kept being created by other writers",
                batch.schema.table()
            ),
        ),
        Error::Rejected { store, message } => Error::Rejected {
            store,
            message: format!(
                "table `{}`: a batch of {} changes was not applied: {message}",
                batch.schema.table(),
                batch.todo.len()
            ),
        },
        other => other,
    }
}

/// Locks and reads the keys, checks the changes, writes the passing ones.
async fn checked_writes(
    conn: &mut Conn, b: &Batch<'_>,
) -> std::result::Result<Vec<Result<()>>, Failure> {
    let keys: Vec<KeyParam<'_>> = b
        .todo
        .iter()
        .map(|&i| KeyParam(&b.changes[i].key))
        .collect();
    let mut stored = Stored {
        versions: locked_versions(conn, b, &keys).await?,
        rows: HashMap::new(),
    };
    let (outcomes, writes) = loop {
        match evaluate(b.schema, b.changes, b.todo, &stored) {
            Ok(evaluated) => break evaluated,
            Err(undecided) => {
                let rows = locked_rows(conn, b, &undecided).await?;
                if let Some(key) = undecided.iter().find(|k| !rows.contains_key(*k)) {
                    return Err(Error::decode(
                        b.schema.table(),
                        b.schema.key_column().name(),
                        format!("the locked row of key {key} was not returned"),
                    )
                    .into());
                }
                stored.rows.extend(rows);
            }
        }
    };
    let (mut inserts, mut updates, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    for change in writes.into_iter().map(|i| &b.changes[i]) {
        match (&change.row, stored.versions.contains_key(&change.key)) {
            (Some(row), false) => inserts.push(row),
            (Some(row), true) => updates.push(row),
            (None, true) => deletes.push(KeyParam(&change.key)),
            (None, false) => {}
        }
    }
    write_rows(conn, b.st, &inserts, |n| b.st.insert_rows(n)).await?;
    write_rows(conn, b.st, &updates, |n| b.st.upsert_rows(n)).await?;
    if !deletes.is_empty() {
        conn.execute(&b.st.delete_many, &[&deletes]).await?;
    }
    Ok(outcomes)
}

/// `SELECT key, version … FOR UPDATE`: each present key's version.
async fn locked_versions(
    conn: &mut Conn, b: &Batch<'_>, keys: &[KeyParam<'_>],
) -> std::result::Result<HashMap<Key, Option<u64>>, Failure> {
    let rows = conn.query(&b.st.lock_keys, &[&keys]).await?;
    let mut versions = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key = values::read_value(b.schema, b.schema.key_index(), row, 0)?;
        let key = Key::from_value(&key).ok_or_else(|| {
            Error::decode(
                b.schema.table(),
                b.schema.key_column().name(),
                "the locking read returned no usable key".to_owned(),
            )
        })?;
        let version = match b.schema.version_index() {
            Some(v) => match values::read_value(b.schema, v, row, 1)? {
                Value::Null => None,
                Value::UInt(u) => Some(u),
                Value::Int(i) => Some(u64::try_from(i).unwrap_or(0)),
                _ => Some(0),
            },
            None => None,
        };
        versions.insert(key, version);
    }
    Ok(versions)
}

/// `SELECT <every column> … FOR UPDATE` of `keys`: their stored rows, with
/// `jsonb` text that holds the same JSON as the change's row taken as the
/// change's text.
async fn locked_rows(
    conn: &mut Conn, b: &Batch<'_>, keys: &[Key],
) -> std::result::Result<HashMap<Key, Record>, Failure> {
    let params: Vec<KeyParam<'_>> = keys.iter().map(KeyParam).collect();
    let rows = conn.query(&b.st.lock_rows, &[&params]).await?;
    let mut stored = HashMap::with_capacity(rows.len());
    for row in &rows {
        let record = values::read_row(b.schema, row)?;
        let key = key_of(b.schema, &record)?;
        let change = b.todo.iter().map(|&i| &b.changes[i]).find(|c| c.key == key);
        let record = match change.and_then(|c| c.row.as_ref()) {
            Some(row) => values::same_json_as(b.schema, record, row),
            None => record,
        };
        stored.insert(key, record);
    }
    Ok(stored)
}
