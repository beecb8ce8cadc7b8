//! Applying one batch: entries grouped by table, tables whose model is not
//! known (or whose table does not fit it) left waiting, each known table's
//! entries applied as conditional changes, round by round.

use std::collections::HashMap;

use super::dead::DeadLetter;
use super::entry::Entry;
use super::lock;
use super::replay::Replayer;
use crate::Result;
use crate::schema::Schema;

/// What applying a batch did.
#[derive(Default)]
pub(super) struct Outcome<'a> {
    /// Applied to the primary (now, or by an earlier attempt at this batch
    /// that committed them before failing).
    pub applied: Vec<&'a Entry>,
    /// Refused now: to be written to the dead-letter file.
    pub dead: Vec<DeadLetter>,
    /// Already in the dead-letter file (refused before a crash or a failed
    /// checkpoint), not yet covered by the checkpoint.
    pub already_dead: Vec<&'a Entry>,
    /// Left for later: their table's model is not known, or their table
    /// does not fit it.
    pub waiting: Vec<&'a Entry>,
}

impl Outcome<'_> {
    /// Entries done (applied or refused, now or before).
    pub fn done(&self) -> usize {
        self.applied.len() + self.dead.len() + self.already_dead.len()
    }
}

impl Replayer {
    /// Applies the entries of every table that is not waiting. A table
    /// waits for the rest of the pass once one of its entries had to: its
    /// later entries must not overtake the earlier ones.
    pub(super) async fn apply<'a>(&mut self, todo: &[&'a Entry]) -> Result<Outcome<'a>> {
        let mut outcome = Outcome::default();
        let mut known: HashMap<&str, Option<&'static Schema>> = HashMap::new();
        let mut tables: Vec<(&'static Schema, Vec<&'a Entry>)> = Vec::new();
        for &e in todo {
            if self.dead.contains(&e.seq) {
                outcome.already_dead.push(e);
                continue;
            }
            let schema = *known
                .entry(e.table.as_str())
                .or_insert_with(|| self.journal.schema_of(&e.table));
            match schema {
                Some(s) if !self.deferred_tables.contains(&e.table) => {
                    match tables.iter_mut().find(|(t, _)| std::ptr::eq(*t, s)) {
                        Some((_, entries)) => entries.push(e),
                        None => tables.push((s, vec![e])),
                    }
                }
                _ => {
                    self.deferred_tables.insert(e.table.clone());
                    outcome.waiting.push(e);
                }
            }
        }
        for (schema, entries) in tables {
            if !self.ensure(schema).await? {
                self.deferred_tables.insert(schema.table().to_owned());
                outcome.waiting.extend(entries);
                continue;
            }
            self.apply_table(schema, &entries, &mut outcome).await?;
        }
        Ok(outcome)
    }

    /// Ensures the table once per replayer; `false` if it does not fit the
    /// model (its entries wait; the pass after the next start-over retries).
    async fn ensure(&mut self, schema: &'static Schema) -> Result<bool> {
        if self.ensured.contains(schema.table()) {
            return Ok(true);
        }
        match self.primary.ensure_schema(schema).await {
            Ok(()) => {
                self.ensured.insert(schema.table());
                Ok(true)
            }
            Err(e) if e.is_unavailable() => Err(e),
            Err(e) => {
                tracing::error!(target: "octopus::journal", table = schema.table(), error = %e, "entries of this table wait: its table does not fit the model");
                *lock(&self.journal.shared.replay_error) = Some(e.to_string());
                Ok(false)
            }
        }
    }

    /// One table's entries, round by round. Changes a transaction committed
    /// are remembered (`committed`), so retrying the batch after a later
    /// failure never applies them twice.
    async fn apply_table<'a>(
        &mut self, schema: &'static Schema, entries: &[&'a Entry], outcome: &mut Outcome<'a>,
    ) -> Result<()> {
        let (before, entries): (Vec<&'a Entry>, Vec<&'a Entry>) = entries
            .iter()
            .partition(|e| self.committed.contains(&e.seq));
        outcome.applied.extend(before);
        let dead = &self.dead;
        let (done, result) = super::log::apply(self.primary.as_ref(), schema, &entries, &|s| {
            dead.contains(&s)
        })
        .await;
        self.committed.extend(done.applied.iter().map(|e| e.seq));
        outcome.applied.extend(done.applied);
        outcome.dead.extend(done.dead);
        result
    }

    /// Writes the checkpoint with every committed entry of the current
    /// batch (`+<seq>` lines), and counts them done: a journal reopened
    /// from this checkpoint does not count them pending either. Called when
    /// a batch fails after part of it committed (a close stops the replayer
    /// only between steps, so it never leaves committed entries unwritten).
    pub(super) async fn persist_committed(&mut self) -> Result<()> {
        let shared = self.journal.shared.clone();
        let mut cp = lock(&shared.checkpoint).clone();
        cp.applied.extend(self.committed.iter().copied());
        let seq = cp.seq;
        let cp = super::persist::persist(&shared, Vec::new(), cp, seq).await?;
        *lock(&shared.checkpoint) = cp;
        let fresh: Vec<u64> = self
            .committed
            .iter()
            .copied()
            .filter(|s| !self.counted.contains(s))
            .collect();
        self.counted.extend(&fresh);
        self.journal.finished(fresh.len() as u64);
        Ok(())
    }
}
