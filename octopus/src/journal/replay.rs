//! The replayer: drains pending journal entries into the primary, in order,
//! in batches, checkpointing after each.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::entry::Op;
use super::{Entry, Journal, key_from_json, record_from_json};
use crate::breaker::CircuitBreaker;
use crate::schema::Schema;
use crate::store::{Store, key_of, normalize_key, version_of};
use crate::value::{Key, Record};
use crate::{Error, Result};

/// Runs until `stop` is set: whenever entries are pending, applies them to
/// `primary` through its breaker (so while the breaker is open the replayer
/// waits, and its calls are the probes that find the primary back).
pub(crate) async fn drain(
    journal: Journal,
    primary: Arc<dyn Store>,
    breaker: Arc<CircuitBreaker>,
    stop: Arc<AtomicBool>,
) {
    let mut ensured: HashSet<&'static str> = HashSet::new();
    let mut backoff = Duration::from_millis(20);
    let mut announced = false;
    let mut waited = 0u32;
    while !stop.load(Ordering::SeqCst) {
        if journal.pending() == 0 {
            if announced {
                tracing::info!(target: "octopus::journal", replayed = journal.stats().replayed, "journal drained: writes go to the primary again");
                announced = false;
            }
            journal.wait_for_appends(Duration::from_millis(500)).await;
            continue;
        }
        let batch = match journal.next_batch() {
            Ok(b) => b,
            Err(e) => {
                fail(&journal, &e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            // Appends requested but not yet durable.
            journal.wait_for_appends(Duration::from_millis(10)).await;
            continue;
        }
        if !announced {
            tracing::info!(target: "octopus::journal", pending = journal.pending(), "draining the journal into the primary");
            announced = true;
        }
        let last = batch[batch.len() - 1].seq;
        match apply(&journal, &primary, &breaker, &batch, &mut ensured).await {
            Ok(Applied::WaitingForModel(table)) => {
                // The application opens its models right after building the
                // plan; report it only if that does not happen soon.
                waited += 1;
                if waited == 100 {
                    journal.set_replay_error(Some(format!(
                        "entries for table `{table}` wait for its model to be opened in this process"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Applied::Done(conflicts)) => {
                waited = 0;
                backoff = Duration::from_millis(20);
                if let Err(e) = journal.checkpoint(last, batch.len() as u64, conflicts) {
                    fail(&journal, &e);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(e) if e.is_unavailable() => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(e) => {
                fail(&journal, &e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn fail(journal: &Journal, e: &Error) {
    tracing::error!(target: "octopus::journal", error = %e, "journal replay stopped; retrying");
    journal.set_replay_error(Some(e.to_string()));
}

fn entry_error(journal: &Journal, entry: &Entry, reason: String) -> Error {
    Error::Journal {
        path: journal.dir().display().to_string(),
        offset: None,
        reason: format!("entry {} (table `{}`): {reason}", entry.seq, entry.table),
    }
}

enum Applied {
    /// Every entry applied; this many skipped as conflicts (the primary held
    /// a newer version).
    Done(u64),
    /// Nothing applied: no model of this table is open yet.
    WaitingForModel(String),
}

/// Applies a batch. Within a batch only the last write of each key
/// matters (a put replaces the whole row, a delete removes it, and writes of
/// different keys commute), so each table's batch becomes one versions read,
/// one multi-row upsert and one multi-row delete, whatever the mix of
/// entries. Batches themselves are applied in order.
async fn apply(
    journal: &Journal,
    primary: &Arc<dyn Store>,
    breaker: &Arc<CircuitBreaker>,
    batch: &[Entry],
    ensured: &mut HashSet<&'static str>,
) -> Result<Applied> {
    // Every table must be known before anything is applied.
    for e in batch {
        if journal.schema_of(&e.table).is_none() {
            return Ok(Applied::WaitingForModel(e.table.clone()));
        }
    }
    let mut tables: Vec<TableBatch<'_>> = Vec::new();
    for e in batch {
        let schema = journal
            .schema_of(&e.table)
            .ok_or_else(|| entry_error(journal, e, "no model for this table is open".into()))?;
        let key = key_from_json(schema, &super::entry::key_json(&e.key))
            .and_then(|k| normalize_key(schema, k).map_err(|e| e.to_string()))
            .map_err(|reason| entry_error(journal, e, reason))?;
        let at = match tables.iter().position(|t| std::ptr::eq(t.schema, schema)) {
            Some(at) => at,
            None => {
                tables.push(TableBatch {
                    schema,
                    last: Vec::new(),
                    by_key: HashMap::new(),
                    deleted: HashSet::new(),
                });
                tables.len() - 1
            }
        };
        tables[at].add(key, e);
    }
    let mut conflicts = 0;
    for t in tables {
        if !ensured.contains(t.schema.table()) {
            breaker.call(primary.ensure_schema(t.schema)).await?;
            ensured.insert(t.schema.table());
        }
        let puts: Vec<&Entry> = t
            .last
            .iter()
            .copied()
            .filter(|e| matches!(e.op, Op::Put(_)))
            .collect();
        let deletes: Vec<Key> = t
            .by_key
            .iter()
            .filter(|(_, i)| matches!(t.last[**i].op, Op::Delete))
            .map(|(k, _)| k.clone())
            .collect();
        if !puts.is_empty() {
            conflicts += put_rows(journal, primary, breaker, t.schema, &puts, &t.deleted).await?;
        }
        if !deletes.is_empty() {
            breaker
                .call(primary.delete_many(t.schema, &deletes))
                .await?;
        }
    }
    Ok(Applied::Done(conflicts))
}

/// One table's part of a batch: the last entry of each key, in order of
/// first appearance.
struct TableBatch<'a> {
    schema: &'static Schema,
    last: Vec<&'a Entry>,
    by_key: HashMap<Key, usize>,
    /// Keys with a delete in the batch. A later put of such a key follows
    /// the delete, so a row the primary holds is older than it, whatever its
    /// version (a re-created row starts again at version 1).
    deleted: HashSet<Key>,
}

impl<'a> TableBatch<'a> {
    fn add(&mut self, key: Key, e: &'a Entry) {
        if matches!(e.op, Op::Delete) {
            self.deleted.insert(key.clone());
        }
        match self.by_key.get(&key) {
            Some(&i) => self.last[i] = e,
            None => {
                self.by_key.insert(key, self.last.len());
                self.last.push(e);
            }
        }
    }
}

/// Upserts the rows of `puts` (one entry per key), skipping rows the
/// primary holds in a newer version; returns how many were skipped.
async fn put_rows(
    journal: &Journal,
    primary: &Arc<dyn Store>,
    breaker: &Arc<CircuitBreaker>,
    schema: &'static Schema,
    puts: &[&Entry],
    after_delete: &HashSet<Key>,
) -> Result<u64> {
    let mut rows: Vec<Record> = Vec::with_capacity(puts.len());
    for e in puts {
        let Op::Put(map) = &e.op else { continue };
        let record = record_from_json(schema, map).map_err(|(column, reason)| {
            entry_error(journal, e, format!("column `{column}`: {reason}"))
        })?;
        rows.push(record);
    }
    let mut conflicts = 0;
    if schema.version_index().is_some() {
        let keys: Vec<Key> = rows
            .iter()
            .map(|r| key_of(schema, r))
            .collect::<Result<_>>()?;
        let current = breaker.call(primary.get_many(schema, &keys)).await?;
        let mut keep = Vec::with_capacity(rows.len());
        for ((row, stored), key) in rows.into_iter().zip(current).zip(&keys) {
            match stored {
                Some(_) if after_delete.contains(key) => keep.push(row),
                Some(stored) => {
                    let (mine, theirs) = (version_of(schema, &row), version_of(schema, &stored));
                    if theirs > mine || (theirs == mine && stored != row) {
                        conflicts += 1;
                        tracing::warn!(target: "octopus::journal", table = schema.table(), key = %key_of(schema, &row)?, ?mine, ?theirs, "replay skipped: the primary holds a newer version");
                    } else if theirs < mine {
                        keep.push(row);
                    }
                }
                None => keep.push(row),
            }
        }
        rows = keep;
    }
    if !rows.is_empty() {
        breaker.call(primary.upsert_many(schema, &rows)).await?;
    }
    Ok(conflicts)
}
