//! The drainer every server runs: whoever holds the lease applies the
//! stream to the primary, in order, with the journal's conditional replay.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::stream::DirectGetErrorKind;
use octopus::journal::log;
use octopus::journal::{DeadLetter, Entry};
use octopus::{CircuitBreaker, Error, Key, Mode, Result, Schema, Store, normalize_key};

use super::{JetStreamJournal, subject};

/// How often an idle drainer looks at the stream.
const POLL: Duration = Duration::from_millis(100);
/// Backoff after a failed pass, doubling up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Messages read per pass.
const BATCH: usize = 512;
/// The lease's key in its bucket.
const LEASE_KEY: &str = "drainer";

/// What a drainer remembers between passes.
#[derive(Default)]
struct State {
    /// The lease's revision while this server holds it.
    lease: Option<u64>,
    /// Tables whose primary table was checked against their model.
    ensured: HashSet<&'static str>,
    /// Entries refused so far: entries written after them are refused too.
    refused: HashSet<u64>,
}

impl JetStreamJournal {
    /// Runs until the journal is closed.
    pub(super) async fn drain(self, primary: Arc<dyn Store>, breaker: Arc<CircuitBreaker>) {
        let mut state = State::default();
        let mut backoff = MIN_BACKOFF;
        while !self.inner.closed.load(Ordering::SeqCst) {
            let pending = match self.pending_now().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(journal = %self.inner.name, error = %e, "cannot read the stream's state");
                    self.idle(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if pending == 0 {
                self.set_mode(Mode::Healthy);
                self.idle(POLL).await;
                continue;
            }
            if self.mode() == Mode::Healthy {
                self.set_mode(Mode::Journaling);
            }
            if !self.hold_lease(&mut state).await {
                self.idle(POLL).await;
                continue;
            }
            match self.pass(primary.as_ref(), &mut state).await {
                Ok(0) => self.idle(POLL).await,
                Ok(_) => {
                    // A pass that applied proves the primary is back: the
                    // plan's writes need not wait out the breaker.
                    breaker.store_answered();
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    if e.is_unavailable() {
                        self.set_mode(Mode::Journaling);
                    } else {
                        tracing::error!(journal = %self.inner.name, error = %e, "replay from the stream is held up");
                        *self
                            .inner
                            .replay_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    }
                    self.idle(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if state.lease.is_some() {
            let _ = self.inner.lease.delete(LEASE_KEY).await;
        }
    }

    /// Waits `d`, or less if a write or a close wakes it.
    async fn idle(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.inner.wake.notified() => {}
        }
    }

    /// Takes or refreshes the lease; whether this server holds it.
    async fn hold_lease(&self, state: &mut State) -> bool {
        let owner = bytes::Bytes::from(self.inner.owner.clone());
        if let Some(revision) = state.lease {
            match self
                .inner
                .lease
                .update(LEASE_KEY, owner.clone(), revision)
                .await
            {
                Ok(next) => {
                    state.lease = Some(next);
                    return true;
                }
                Err(_) => state.lease = None,
            }
        }
        match self.inner.lease.create(LEASE_KEY, owner).await {
            Ok(revision) => {
                tracing::info!(journal = %self.inner.name, owner = %self.inner.owner, "this server drains the stream");
                state.lease = Some(revision);
                true
            }
            Err(_) => false,
        }
    }

    /// One pass: the first messages of the stream applied (or refused),
    /// then purged. Returns how many were done.
    async fn pass(&self, primary: &dyn Store, state: &mut State) -> Result<usize> {
        let entries = self.read_batch().await?;
        // Entries of a table no model here knows wait, and so does all
        // that follows them (the stream's order is kept).
        let schemas = self
            .inner
            .schemas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let upto = entries
            .iter()
            .position(|e| !schemas.contains_key(&e.table))
            .unwrap_or(entries.len());
        if let Some(e) = entries.get(upto) {
            let why = format!(
                "entries of table `{}` wait: no model of it is registered on this server",
                e.table
            );
            *self
                .inner
                .replay_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(why);
        }
        let todo = &entries[..upto];
        if todo.is_empty() {
            return Ok(0);
        }
        let (mut dead, mut done) = (Vec::new(), Vec::new());
        self.set_mode(Mode::Draining);
        let mut tables: Vec<(&'static Schema, Vec<&Entry>)> = Vec::new();
        for e in todo {
            let schema = schemas[&e.table];
            match tables.iter_mut().find(|(s, _)| std::ptr::eq(*s, schema)) {
                Some((_, list)) => list.push(e),
                None => tables.push((schema, vec![e])),
            }
        }
        let mut failed = None;
        for (schema, list) in tables {
            if state.ensured.insert(schema.table())
                && let Err(e) = primary.ensure_schema(schema).await
            {
                state.ensured.remove(schema.table());
                failed = Some(e);
                break;
            }
            let refused = &state.refused;
            let (applied, result) =
                log::apply(primary, schema, &list, &|s| refused.contains(&s)).await;
            state
                .refused
                .extend(applied.dead.iter().map(|l| l.entry.seq));
            done.extend(applied.applied.iter().map(|e| e.seq));
            done.extend(applied.dead.iter().map(|l| l.entry.seq));
            self.inner
                .replayed
                .fetch_add(applied.applied.len() as u64, Ordering::Relaxed);
            // As the cache levels hold them: of the schema's signedness.
            let keys: Vec<Key> = applied
                .applied
                .iter()
                .map(|e| &e.key)
                .chain(applied.dead.iter().map(|l| &l.entry.key))
                .map(|k| normalize_key(schema, k.clone()).unwrap_or_else(|_| k.clone()))
                .collect();
            dead.extend(applied.dead);
            self.invalidate(schema, &keys).await;
            if let Err(e) = result {
                failed = Some(e);
                break;
            }
        }
        self.bury(&dead).await?;
        self.remove(upto == entries.len() && failed.is_none(), &done)
            .await?;
        match failed {
            Some(e) => Err(e),
            None => Ok(done.len()),
        }
    }

    /// Up to [`BATCH`] entries from the start of the stream, fetched by
    /// sequence number in parallel (a message deleted after a partial pass
    /// is a gap). A message that is not an entry (another publisher's, on
    /// our subjects) stops replay with an error naming it: it is never
    /// skipped.
    async fn read_batch(&self) -> Result<Vec<Entry>> {
        let unavailable =
            |e: &dyn std::fmt::Display| Error::unavailable(&self.inner.name, e.to_string());
        let mut stream = self.inner.stream.clone();
        let state = stream
            .info()
            .await
            .map_err(|e| unavailable(&e))?
            .state
            .clone();
        if state.messages == 0 {
            return Ok(Vec::new());
        }
        let first = state.first_sequence;
        let end = state.last_sequence.min(first + BATCH as u64 - 1);
        let mut gets = tokio::task::JoinSet::new();
        for seq in first..=end {
            let stream = self.inner.stream.clone();
            gets.spawn(async move { stream.direct_get(seq).await });
        }
        let mut messages = Vec::with_capacity((end - first + 1) as usize);
        while let Some(got) = gets.join_next().await {
            match got.map_err(|e| unavailable(&e))? {
                Ok(m) => messages.push(m),
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
                Err(e) => return Err(unavailable(&e)),
            }
        }
        messages.sort_by_key(|m| m.sequence);
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
        Ok(entries)
    }

    /// Drops `keys` from every cache level of the plans served.
    async fn invalidate(&self, schema: &'static Schema, keys: &[Key]) {
        let caches = self
            .inner
            .caches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for c in caches {
            c.invalidate(schema, keys).await;
        }
    }

    /// Publishes dead letters on their stream, each acknowledged.
    async fn bury(&self, dead: &[DeadLetter]) -> Result<()> {
        for letter in dead {
            let subject = subject::dead(&self.inner.prefix, &letter.entry.table);
            let payload = letter.to_json().to_string();
            let ack = self.inner.js.publish(subject, payload.into()).await;
            let acked = match ack {
                Ok(ack) => ack.await.map(drop),
                Err(e) => Err(e),
            };
            acked.map_err(|e| Error::unavailable(&self.inner.name, e.to_string()))?;
            self.inner.dead_letters.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(journal = %self.inner.name, seq = letter.entry.seq, table = %letter.entry.table, key = %letter.entry.key, error = %letter.error, "stream entry refused by the primary: kept as a dead letter");
        }
        Ok(())
    }

    /// Removes what is done: everything up to the last of it at once when
    /// `all` that was read is done, else message by message.
    async fn remove(&self, all: bool, done: &[u64]) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| Error::unavailable(&self.inner.name, e.to_string());
        match (all, done.iter().max()) {
            (true, Some(&last)) => {
                self.inner
                    .stream
                    .purge()
                    .sequence(last + 1)
                    .await
                    .map_err(|e| fail(&e))?;
            }
            _ => {
                for &seq in done {
                    self.inner
                        .stream
                        .delete_message(seq)
                        .await
                        .map_err(|e| fail(&e))?;
                }
            }
        }
        self.inner
            .pending
            .send_modify(|n| *n = n.saturating_sub(done.len() as u64));
        Ok(())
    }
}
