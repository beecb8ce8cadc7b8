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

/// Applies a batch in order.
async fn apply(
    journal: &Journal,
    primary: &Arc<dyn Store>,
    breaker: &Arc<CircuitBreaker>,
    batch: &[Entry],
    ensured: &mut HashSet<&'static str>,
) -> Result<Applied> {
    // Every table must be known before anything is applied, so a batch is
    // applied whole or not at all (entries are replayed only in order).
    for e in batch {
        if journal.schema_of(&e.table).is_none() {
            return Ok(Applied::WaitingForModel(e.table.clone()));
        }
    }
    let mut conflicts = 0;
    let mut i = 0;
    while i < batch.len() {
        let first = &batch[i];
        let schema = journal
            .schema_of(&first.table)
            .ok_or_else(|| entry_error(journal, first, "no model for this table is open".into()))?;
        if !ensured.contains(schema.table()) {
            breaker.call(primary.ensure_schema(schema)).await?;
            ensured.insert(schema.table());
        }
        let is_put = matches!(first.op, Op::Put(_));
        let mut j = i;
        while j < batch.len()
            && batch[j].table == first.table
            && matches!(batch[j].op, Op::Put(_)) == is_put
        {
            j += 1;
        }
        let run = &batch[i..j];
        if is_put {
            conflicts += put_run(journal, primary, breaker, schema, run).await?;
        } else {
            for e in run {
                let key = key_from_json(schema, &super::entry::key_json(&e.key))
                    .and_then(|k| normalize_key(schema, k).map_err(|e| e.to_string()))
                    .map_err(|reason| entry_error(journal, e, reason))?;
                breaker.call(primary.delete(schema, &key)).await?;
            }
        }
        i = j;
    }
    Ok(Applied::Done(conflicts))
}

async fn put_run(
    journal: &Journal,
    primary: &Arc<dyn Store>,
    breaker: &Arc<CircuitBreaker>,
    schema: &'static Schema,
    run: &[Entry],
) -> Result<u64> {
    // The last entry per key wins; order of first appearance is kept.
    let mut latest: HashMap<Key, usize> = HashMap::new();
    let mut rows: Vec<Record> = Vec::with_capacity(run.len());
    for e in run {
        let Op::Put(map) = &e.op else { continue };
        let record = record_from_json(schema, map).map_err(|(column, reason)| {
            entry_error(journal, e, format!("column `{column}`: {reason}"))
        })?;
        let key =
            key_of(schema, &record).map_err(|err| entry_error(journal, e, err.to_string()))?;
        match latest.get(&key) {
            Some(&at) => rows[at] = record,
            None => {
                latest.insert(key, rows.len());
                rows.push(record);
            }
        }
    }
    let mut conflicts = 0;
    if schema.version_index().is_some() {
        let keys: Vec<Key> = rows
            .iter()
            .map(|r| key_of(schema, r))
            .collect::<Result<_>>()?;
        let current = breaker.call(primary.get_many(schema, &keys)).await?;
        let mut keep = Vec::with_capacity(rows.len());
        for (row, stored) in rows.into_iter().zip(current) {
            match stored {
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
