//! [`Store::apply`] on MySQL: one transaction on one connection, within the
//! call's deadline.
//!
//! 1. `START TRANSACTION` at `REPEATABLE READ`;
//! 2. `SELECT key, version … WHERE key IN (…) FOR UPDATE`, in runs that fit
//!    a statement: present keys are locked, absent ones by their gap, so no
//!    other writer can create, change or delete any of them until the end;
//! 3. each change is checked ([`Change::check_version`]) against the stored
//!    version, or against the change of the same key before it in the
//!    batch; the few that only the whole row decides (a failed precondition
//!    whose row may already be stored) are checked against it, read by a
//!    second locking `SELECT` of every column;
//! 4. the passing changes written with multi-row statements: `INSERT` of
//!    the rows whose key was absent, `INSERT … ON DUPLICATE KEY UPDATE` of
//!    the rows whose key was present, `DELETE … WHERE key IN (…)` of the
//!    present keys deleted;
//! 5. `COMMIT`, if a margin of the deadline is left for it (see
//!    [`call`](super::call) for why the statements before it need none).
//!
//! A deadlock or lock timeout rolls back and runs the whole transaction
//! again while a whole statement still fits in the deadline; any other
//! failed statement rolls back and refuses the whole call, so the caller can
//! split the batch to find the change at fault.

use std::collections::HashMap;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, IsolationLevel, Params, Row, Transaction, TxOpts};
use octopus::{Change, Error, Key, Record, Result, Schema, Store, key_of};

use super::call::{Access, Failure};
use super::sql::{self, Statements, key_param, param};
use super::{MysqlStore, check_text_key, chunk};
use crate::checked::{Stored, evaluate};

/// A batch of changes, as the transaction sees it.
struct Batch<'b> {
    schema: &'static Schema,
    st: &'b Statements,
    changes: &'b [Change],
    /// The changes that passed the checks made without the database.
    todo: &'b [usize],
    /// Bytes of parameters per statement.
    budget: usize,
}

/// See the module docs.
pub(super) async fn apply(
    store: &MysqlStore, schema: &'static Schema, changes: &[Change],
) -> Result<Vec<Result<()>>> {
    let budget = chunk::budget(store.max_packet().await?);
    let mut out: Vec<Result<()>> = changes
        .iter()
        .map(|c| check_change(store, schema, c, budget))
        .collect();
    let todo: Vec<usize> = (0..changes.len()).filter(|&i| out[i].is_ok()).collect();
    if todo.is_empty() {
        return Ok(out);
    }
    let st = store.statements(schema);
    let batch = &Batch {
        schema,
        st: &st,
        changes,
        todo: &todo,
        budget,
    };
    let outcomes = store
        .call_with(
            Access::Transaction,
            |conn, until| attempt(store, batch, conn, until),
            |e| batch_refused(store.name(), batch, e),
        )
        .await?;
    for (&i, outcome) in todo.iter().zip(outcomes) {
        out[i] = outcome;
    }
    Ok(out)
}

/// What is refused of a change before the transaction: a key the table
/// cannot hold, a row the store would refuse, a row whose key is not the
/// change's, a row too large for one statement.
fn check_change(
    store: &MysqlStore, schema: &'static Schema, change: &Change, budget: usize,
) -> Result<()> {
    let Some(row) = change.check_for(store, schema, check_text_key)? else {
        return Ok(());
    };
    let size = chunk::row_len(row.values());
    if size > budget {
        return Err(Error::rejected(
            store.name().to_owned(),
            format!(
                "table `{}`, key {}: the row takes about {size} bytes, more than one statement \
                 may carry ({budget} bytes, from the server's max_allowed_packet)",
                schema.table(),
                change.key
            ),
        ));
    }
    Ok(())
}

/// A failed statement (a constraint the table has beyond the model's, say)
/// refuses the batch; the error names the table.
fn batch_refused(store: &str, batch: &Batch<'_>, e: mysql_async::Error) -> Error {
    match sql::classify(store, e) {
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

/// One run of the transaction: the outcome of each change of `batch.todo`.
async fn attempt(
    store: &MysqlStore, batch: &Batch<'_>, mut conn: Conn, until: Instant,
) -> std::result::Result<Vec<Result<()>>, Failure> {
    let mut options = TxOpts::default();
    options.with_isolation_level(IsolationLevel::RepeatableRead);
    let mut tx = conn.start_transaction(options).await?;
    match checked_writes(&mut tx, batch).await {
        Ok(outcomes) if store.inner.limits.room_for_commit(until) => {
            tx.commit().await?;
            Ok(outcomes)
        }
        Ok(_) => {
            let _ = tx.rollback().await;
            Err(store.no_time_to_commit(until))
        }
        Err(e) => {
            // A connection whose rollback failed is closed by the pool.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Locks and reads the keys, checks the changes, writes the passing ones.
async fn checked_writes(
    tx: &mut Transaction<'_>, b: &Batch<'_>,
) -> std::result::Result<Vec<Result<()>>, Failure> {
    let keys: Vec<&Key> = b.todo.iter().map(|&i| &b.changes[i].key).collect();
    let mut stored = Stored {
        versions: locked_versions(tx, b, &keys).await?,
        rows: HashMap::new(),
    };
    let (outcomes, writes) = loop {
        match evaluate(b.schema, b.changes, b.todo, &stored) {
            Ok(evaluated) => break evaluated,
            Err(undecided) => {
                let rows = locked_rows(tx, b, &undecided).await?;
                // The keys are locked: a row missing now is a server fault,
                // and reading again would not end.
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
    // A row whose key was absent is a plain INSERT: with ON DUPLICATE KEY
    // UPDATE, a clash on a unique index the model does not know about would
    // update the other row instead of failing.
    let (mut inserts, mut updates, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    for change in writes.into_iter().map(|i| &b.changes[i]) {
        match (&change.row, stored.versions.contains_key(&change.key)) {
            (Some(_), false) => inserts.push(change),
            (Some(_), true) => updates.push(change),
            (None, true) => deletes.push(change),
            (None, false) => {}
        }
    }
    write_rows(tx, b, &inserts, |n| b.st.insert_rows(n)).await?;
    write_rows(tx, b, &updates, |n| b.st.upsert_rows(n)).await?;
    exec_runs(
        tx,
        b,
        &deletes,
        |c| chunk::key_len(&c.key),
        |c, out| out.push(key_param(&c.key)),
        |n| b.st.delete_keys(n),
        1,
    )
    .await?;
    Ok(outcomes)
}

/// `SELECT key, version … FOR UPDATE` of `keys`: each present key's version.
async fn locked_versions(
    tx: &mut Transaction<'_>, b: &Batch<'_>, keys: &[&Key],
) -> std::result::Result<HashMap<Key, Option<u64>>, Failure> {
    let rows = exec_runs(
        tx,
        b,
        keys,
        |k| chunk::key_len(k),
        |k, out| out.push(key_param(k)),
        |n| b.st.lock_keys(n),
        1,
    )
    .await?;
    let mut versions = HashMap::with_capacity(rows.len());
    for row in rows {
        let mut values = row.unwrap().into_iter();
        let key = values
            .next()
            .map(|v| sql::read_value(b.schema, b.schema.key_index(), v))
            .transpose()?
            .as_ref()
            .and_then(Key::from_value)
            .ok_or_else(|| {
                Error::decode(
                    b.schema.table(),
                    b.schema.key_column().name(),
                    "the locking read returned no usable key".to_owned(),
                )
            })?;
        // A NULL version is no version, as `version_of` reads it.
        let version = values.next().filter(|v| *v != mysql_async::Value::NULL);
        versions.insert(key, version.map(sql::version_number));
    }
    Ok(versions)
}

/// `SELECT <every column> … FOR UPDATE` of `keys`: their stored rows.
async fn locked_rows(
    tx: &mut Transaction<'_>, b: &Batch<'_>, keys: &[Key],
) -> std::result::Result<HashMap<Key, Record>, Failure> {
    let rows = exec_runs(
        tx,
        b,
        keys,
        chunk::key_len,
        |k, out| out.push(key_param(k)),
        |n| b.st.lock_rows(n),
        1,
    )
    .await?;
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        let record = sql::read_row(b.schema, row)?;
        stored.insert(key_of(b.schema, &record)?, record);
    }
    Ok(stored)
}

/// Writes the rows of `changes` with the statement `text(n)` of `n` rows.
async fn write_rows(
    tx: &mut Transaction<'_>, b: &Batch<'_>, changes: &[&Change], text: impl Fn(usize) -> String,
) -> std::result::Result<(), mysql_async::Error> {
    exec_runs(
        tx,
        b,
        changes,
        |c| chunk::row_len(row_of(c)),
        |c, out| out.extend(row_of(c).iter().map(param)),
        text,
        b.schema.columns().len(),
    )
    .await
    .map(drop)
}

/// The values of a change's row (none for a delete).
fn row_of<'c>(change: &&'c Change) -> &'c [octopus::Value] {
    change.row.as_ref().map_or(&[], |r| r.values())
}

/// Runs `text(n)` for each run of `items` that fits one statement, binding
/// each item's `placeholders` parameters with `bind`; returns every row the
/// statements return.
async fn exec_runs<T>(
    tx: &mut Transaction<'_>, b: &Batch<'_>, items: &[T], size: impl Fn(&T) -> usize,
    bind: impl Fn(&T, &mut Vec<mysql_async::Value>), text: impl Fn(usize) -> String,
    placeholders: usize,
) -> std::result::Result<Vec<Row>, mysql_async::Error> {
    let sizes: Vec<usize> = items.iter().map(size).collect();
    let mut rows = Vec::new();
    for run in chunk::runs(&sizes, placeholders, b.budget) {
        let run = &items[run];
        let mut params = Vec::with_capacity(run.len() * placeholders);
        for item in run {
            bind(item, &mut params);
        }
        let text = text(run.len());
        rows.extend(
            tx.exec::<Row, _, _>(text, Params::Positional(params))
                .await?,
        );
    }
    Ok(rows)
}
