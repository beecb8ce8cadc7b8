//! One drainer pass: the first messages of the stream read from its leader,
//! applied table by table with the journal's conditional replay (the lease
//! renewed before each table), refusals published as dead letters, keys
//! dropped from the caches, and what is done removed.

use std::sync::atomic::Ordering;

use octopus::journal::log;
use octopus::journal::{DeadLetter, Entry};
use octopus::{Error, Key, Mode, Result, Schema, Store, normalize_key};

use super::drain::{Passed, State};
use super::{JetStreamJournal, range, subject};
use crate::lock::{MutexExt, RwLockExt};

/// Messages read per pass.
const BATCH: u64 = 512;

impl JetStreamJournal {
    /// One pass (see the module docs).
    pub(super) async fn pass(&self, primary: &dyn Store, state: &mut State) -> Result<Passed> {
        let (first, entries) = self.read_batch().await?;
        state.done.retain(|&seq| seq >= first);
        let schemas = self.inner.schemas.reading().clone();
        // Tables are independent: entries of a table no model here knows
        // wait, the others go on.
        let mut waiting = 0;
        let mut tables: Vec<(&'static Schema, Vec<&Entry>)> = Vec::new();
        for e in entries.iter().filter(|e| !state.done.contains(&e.seq)) {
            let Some(&schema) = schemas.get(&e.table) else {
                if waiting == 0 {
                    let why = format!(
                        "entries of table `{}` wait: no model of it is registered on this server",
                        e.table
                    );
                    *self.inner.replay_error.locked() = Some(why);
                }
                waiting += 1;
                continue;
            };
            match tables.iter_mut().find(|(s, _)| std::ptr::eq(*s, schema)) {
                Some((_, list)) => list.push(e),
                None => tables.push((schema, vec![e])),
            }
        }
        let already: Vec<u64> = entries
            .iter()
            .map(|e| e.seq)
            .filter(|s| state.done.contains(s))
            .collect();
        if tables.is_empty() && already.is_empty() {
            return Ok(if waiting > 0 {
                Passed::Blocked
            } else {
                Passed::Did(0)
            });
        }
        self.set_mode(Mode::Draining);
        let mut dead = Vec::new();
        let mut failed = None;
        for (schema, list) in tables {
            if let Err(e) = self
                .apply_table(primary, state, schema, &list, &mut dead)
                .await
            {
                failed = Some(e);
                break;
            }
        }
        // Refusals are done once their dead letters are stored.
        self.bury(&dead).await?;
        state.done.extend(dead.iter().map(|l| l.entry.seq));
        state.refused.extend(dead.iter().map(|l| l.entry.seq));
        let all =
            waiting == 0 && failed.is_none() && entries.iter().all(|e| state.done.contains(&e.seq));
        let removed = self.remove(all, &entries, state).await?;
        self.pending_now().await?;
        match failed {
            Some(e) => Err(e),
            None => Ok(Passed::Did(removed)),
        }
    }

    /// Applies one table's entries, the lease renewed first; applied ones
    /// are done at once (never applied twice), refused ones join `dead`.
    async fn apply_table(
        &self, primary: &dyn Store, state: &mut State, schema: &'static Schema, list: &[&Entry],
        dead: &mut Vec<DeadLetter>,
    ) -> Result<()> {
        if !self.hold_lease(state).await {
            return Err(Error::unavailable(
                &self.inner.name,
                "the drainer's lease was lost",
            ));
        }
        if state.ensured.insert(schema.table())
            && let Err(e) = primary.ensure_schema(schema).await
        {
            state.ensured.remove(schema.table());
            return Err(e);
        }
        let refused = &state.refused;
        let (outcome, result) = log::apply(primary, schema, list, &|s| refused.contains(&s)).await;
        state.done.extend(outcome.applied.iter().map(|e| e.seq));
        self.inner
            .replayed
            .fetch_add(outcome.applied.len() as u64, Ordering::Relaxed);
        // As the cache levels hold them: of the schema's signedness.
        let keys: Vec<Key> = outcome
            .applied
            .iter()
            .map(|e| &e.key)
            .chain(outcome.dead.iter().map(|l| &l.entry.key))
            .map(|k| normalize_key(schema, k.clone()).unwrap_or_else(|_| k.clone()))
            .collect();
        dead.extend(outcome.dead);
        self.invalidate(schema, &keys).await;
        result
    }

    /// The stream's first sequence number, and up to [`BATCH`] entries from
    /// it, read from the stream's leader by sequence number in parallel (a
    /// deleted message is a gap). A message that is not an entry (another
    /// publisher's, on our subjects) stops replay with an error naming it:
    /// it is never skipped.
    async fn read_batch(&self) -> Result<(u64, Vec<Entry>)> {
        let name = &self.inner.name;
        let Some(all) = range::extent(&self.inner.stream, name).await? else {
            // Empty: everything up to the last number was removed.
            return Ok((u64::MAX, Vec::new()));
        };
        let first = *all.start();
        let end = (*all.end()).min(first + BATCH - 1);
        let messages = range::messages(&self.inner.stream, first..=end, name).await?;
        let mut entries = Vec::with_capacity(messages.len());
        for m in messages {
            match log::decode(&m.payload, m.sequence) {
                Ok(e) => entries.push(e),
                Err(_) if !entries.is_empty() => break,
                Err(why) => {
                    return Err(Error::rejected(
                        &self.inner.name,
                        format!(
                            "message {} on `{}` is not a journal entry ({why}); replay waits until it is removed",
                            m.sequence, m.subject
                        ),
                    ));
                }
            }
        }
        Ok((first, entries))
    }

    /// Drops `keys` from every cache level of the plans served.
    async fn invalidate(&self, schema: &'static Schema, keys: &[Key]) {
        let caches = self.inner.caches.reading().clone();
        for c in caches {
            c.invalidate(schema, keys).await;
        }
    }

    /// Publishes dead letters on their stream, each acknowledged.
    async fn bury(&self, dead: &[DeadLetter]) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| Error::unavailable(&self.inner.name, e.to_string());
        // All published first, then every acknowledgement awaited: one
        // round trip for the lot, not one per letter.
        let mut acks = Vec::with_capacity(dead.len());
        for letter in dead {
            let subject = subject::dead(&self.inner.prefix, &letter.entry.table);
            let payload = letter.to_json().to_string();
            acks.push(
                self.inner
                    .js
                    .publish(subject, payload.into())
                    .await
                    .map_err(|e| fail(&e))?,
            );
        }
        for (ack, letter) in acks.into_iter().zip(dead) {
            ack.await.map_err(|e| fail(&e))?;
            self.inner.dead_letters.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(journal = %self.inner.name, seq = letter.entry.seq, table = %letter.entry.table, key = %letter.entry.key, error = %letter.error, "stream entry refused by the primary: kept as a dead letter");
        }
        Ok(())
    }

    /// Removes the done entries of `entries`: all at once (a purge up to
    /// the last) when `all` of what was read is done, else one by one.
    /// Returns how many it removed.
    async fn remove(&self, all: bool, entries: &[Entry], state: &mut State) -> Result<usize> {
        let fail = |e: &dyn std::fmt::Display| Error::unavailable(&self.inner.name, e.to_string());
        let done: Vec<u64> = entries
            .iter()
            .map(|e| e.seq)
            .filter(|s| state.done.contains(s))
            .collect();
        match (all, done.last()) {
            (true, Some(&last)) => {
                self.inner
                    .stream
                    .purge()
                    .sequence(last + 1)
                    .await
                    .map_err(|e| fail(&e))?;
            }
            _ => {
                for &seq in &done {
                    self.inner
                        .stream
                        .delete_message(seq)
                        .await
                        .map_err(|e| fail(&e))?;
                }
            }
        }
        Ok(done.len())
    }
}
