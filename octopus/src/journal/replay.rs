//! The replayer: drains pending entries into the primary, in order, in
//! batches, each entry applied with the primary's own semantics (see
//! [`Store::apply`]); refused entries become dead letters and the drain goes
//! on. It belongs to the journal: [`Journal::close`] stops it.
//!
//! - **Probing.** The replayer calls the primary directly, not through its
//!   breaker, on a short backoff (10 ms doubling to 100 ms), so replay starts
//!   within about 100 ms of the primary answering again whatever the
//!   breaker's `open_wait`; a batch that applies closes the breaker.
//! - **Rounds.** Each entry is its own change; round *n* of a batch holds
//!   the *n*-th entry of every key, so each is checked against what the
//!   entries before it left. An entry written after a refused one is
//!   refused too. What committed before a batch failed is checkpointed.
//! - **Narrowing.** A batch the primary refuses as a whole (a constraint, a
//!   foreign key, a statement too large) is split in halves until the
//!   culprit is alone; it is dead-lettered, the rest applied.
//! - **Tables are independent.** Entries of a table whose model is not open
//!   in this process (or whose table does not match its model) wait; the
//!   checkpoint records per table how far the others got, so they go on.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::batch::Outcome;
use super::checkpoint::Resume;
use super::entry::Entry;
use super::segment::Cursor;
use super::{Journal, lock};
use crate::breaker::CircuitBreaker;
use crate::fallback::Mode;
use crate::store::Store;
use crate::{Error, Result};

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// A failed batch that took at least this long is taken as too big for the
/// call deadline: the next one is half the size.
const SLOW_FAILURE: Duration = Duration::from_millis(500);

pub(super) struct Replayer {
    pub(super) journal: Journal,
    name: String,
    pub(super) primary: Arc<dyn Store>,
    breaker: Arc<CircuitBreaker>,
    stop: watch::Receiver<bool>,
    cursor: Cursor,
    /// Where the last batch read ends in the segments (see
    /// `Checkpoint::resume`).
    batch_end: Option<Resume>,
    /// The next batch, being read on a blocking thread while the current
    /// one is applied: the sequence number it starts at, and the read.
    prefetch: Option<(u64, JoinHandle<Read>)>,
    /// The first entry since the cursor last started over that had to wait
    /// (its table's model is not open, or its table does not match).
    deferred: Option<u64>,
    pub(super) deferred_tables: BTreeSet<String>,
    registrations: u64,
    pub(super) ensured: HashSet<&'static str>,
    /// Entries of the current batch a transaction has committed: a retry of
    /// the batch (after a later table or half failed) skips them.
    pub(super) committed: HashSet<u64>,
    /// Committed entries already counted done (made durable before their
    /// batch finished).
    pub(super) counted: HashSet<u64>,
    /// Sequence numbers of dead-lettered entries: a later entry checked
    /// against one of them when it was written is refused too.
    pub(super) dead: HashSet<u64>,
    limit: usize,
    backoff: Duration,
}

/// What one step of the replayer leads to.
enum Next {
    /// Go on at once.
    Continue,
    /// Wait this long, or until something is appended or registered.
    Idle(Duration),
    /// Wait this long whatever happens (backing off a primary that is down).
    Backoff(Duration),
}

impl Replayer {
    pub(super) fn new(
        journal: Journal, primary: Arc<dyn Store>, breaker: Arc<CircuitBreaker>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Replayer {
            limit: journal.shared.options.replay_batch,
            name: primary.name().to_owned(),
            journal,
            primary,
            breaker,
            stop,
            cursor: Cursor::new(1),
            batch_end: None,
            prefetch: None,
            deferred: None,
            deferred_tables: BTreeSet::new(),
            registrations: 0,
            ensured: HashSet::new(),
            committed: HashSet::new(),
            counted: HashSet::new(),
            dead: HashSet::new(),
            backoff: MIN_BACKOFF,
        }
    }

    pub(super) async fn run(mut self, previous: Option<JoinHandle<()>>) {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        self.start_over();
        match self.journal.all_dead_letters() {
            Ok(letters) => self.dead = letters.iter().map(|l| l.entry.seq).collect(),
            Err(e) => {
                tracing::error!(target: "octopus::journal", error = %e, "dead letters unreadable: entries that follow them are checked by the primary alone");
            }
        }
        tracing::debug!(target: "octopus::journal", primary = %self.name, "replayer started");
        while !*self.stop.borrow() {
            let next = self.step().await;
            let wait = match next {
                Next::Continue => continue,
                Next::Idle(d) => Some(d),
                Next::Backoff(d) => {
                    tokio::select! {
                        _ = self.stop.changed() => {}
                        _ = tokio::time::sleep(d) => {}
                    }
                    None
                }
            };
            if let Some(d) = wait {
                tokio::select! {
                    _ = self.stop.changed() => {}
                    _ = self.journal.shared.wake.notified() => {}
                    _ = tokio::time::sleep(d) => {}
                }
            }
        }
    }

    /// The next batch: the prefetched one if it starts where the cursor
    /// is, else read now; either way on a blocking thread.
    async fn read_batch(&mut self, up_to: u64) -> Result<Vec<Entry>> {
        let first = self.cursor.next_seq;
        let handle = match self.prefetch.take() {
            Some((at, handle)) if at == first => handle,
            _ => spawn_read(
                std::mem::replace(&mut self.cursor, Cursor::new(first)),
                &self.journal,
                up_to,
                self.limit,
            ),
        };
        let (cursor, batch) = handle.await.map_err(|e| {
            Error::journal(
                self.journal.dir(),
                None,
                format!("reading the journal failed: {e}"),
            )
        })?;
        self.cursor = cursor;
        self.batch_end = self.cursor.last_end();
        batch
    }

    /// Starts reading the batch after the current one.
    fn start_prefetch(&mut self) {
        let at = self.cursor.next_seq;
        let up_to = self.journal.shared.durable_seq.load(Ordering::SeqCst);
        let cursor = std::mem::replace(&mut self.cursor, Cursor::new(at));
        self.prefetch = Some((at, spawn_read(cursor, &self.journal, up_to, self.limit)));
    }

    /// Reads again from the first entry the checkpoint does not cover.
    fn start_over(&mut self) {
        let (from, resume) = {
            let cp = lock(&self.journal.shared.checkpoint);
            (cp.seq + 1, cp.resume)
        };
        self.cursor = Cursor::resuming(from, resume);
        self.deferred = None;
        self.deferred_tables.clear();
        self.registrations = self.journal.shared.registrations.load(Ordering::SeqCst);
    }

    async fn step(&mut self) -> Next {
        let registrations = self.journal.shared.registrations.load(Ordering::SeqCst);
        if self.deferred.is_some() && registrations != self.registrations {
            self.start_over();
        }
        if self.journal.pending() == 0 {
            self.journal.set_mode(Mode::Healthy);
            return Next::Idle(Duration::from_millis(500));
        }
        let up_to = self.journal.shared.durable_seq.load(Ordering::SeqCst);
        let first = self.cursor.next_seq;
        let batch = match self.read_batch(up_to).await {
            Ok(b) => b,
            Err(e) => return self.failed(first, &e),
        };
        if !batch.is_empty() {
            self.start_prefetch();
        }
        let Some(last) = batch.last().map(|e| e.seq) else {
            if self.deferred.is_some() {
                // Only waiting entries are left: read them again after a
                // while (a failed table may have been fixed meanwhile).
                self.report_waiting();
                self.start_over();
                return Next::Idle(Duration::from_secs(1));
            }
            return Next::Idle(Duration::from_millis(200));
        };
        let started = Instant::now();
        // Entries this replayer committed are done for the checkpoint but
        // not yet counted: they stay in, and count as applied.
        let (todo, skipped): (Vec<&Entry>, Vec<&Entry>) = {
            let cp = lock(&self.journal.shared.checkpoint);
            batch
                .iter()
                .partition(|e| !cp.done(e) || self.committed.contains(&e.seq))
        };
        // Done before this replayer read them (a replayer stopped mid-batch):
        // their index slots must not outlive them.
        self.journal.shared.index.remove_done(skipped.into_iter());
        let applied = self.apply(&todo).await;
        if applied.is_err()
            && self.committed.iter().any(|s| !self.counted.contains(s))
            && let Err(e) = self.persist_committed().await
        {
            return self.failed(first, &e);
        }
        let next = match applied {
            Ok(outcome) => match self.finish(last, outcome).await {
                Ok(()) => Next::Continue,
                Err(e) => self.failed(first, &e),
            },
            Err(e) if e.is_unavailable() => {
                self.cursor = Cursor::new(first);
                self.journal.set_mode(Mode::Journaling);
                if started.elapsed() >= SLOW_FAILURE {
                    self.limit = (self.limit / 2).max(1);
                }
                let wait = self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Next::Backoff(wait)
            }
            Err(e) => self.failed(first, &e),
        };
        // Freeing a batch's decoded rows takes a while: not on this task.
        drop(todo);
        tokio::task::spawn_blocking(move || drop(batch));
        next
    }

    fn failed(&mut self, first: u64, e: &Error) -> Next {
        tracing::error!(target: "octopus::journal", error = %e, "journal replay held up; retrying");
        *lock(&self.journal.shared.replay_error) = Some(e.to_string());
        self.cursor = Cursor::new(first);
        Next::Backoff(Duration::from_secs(1))
    }

    fn report_waiting(&self) {
        let tables: Vec<&str> = self.deferred_tables.iter().map(String::as_str).collect();
        let mut error = lock(&self.journal.shared.replay_error);
        if error.is_none() {
            *error = Some(format!(
                "entries of table(s) {} wait for their model to be opened in this process",
                tables.join(", ")
            ));
        }
    }

    /// Makes a batch's outcome durable: dead letters first, then the
    /// checkpoint; then counters, the index, the mode and old segments.
    async fn finish(&mut self, last: u64, outcome: Outcome<'_>) -> Result<()> {
        let shared = self.journal.shared.clone();
        if let Some(first) = outcome.waiting.iter().map(|e| e.seq).min() {
            self.deferred.get_or_insert(first);
        }
        let mut cp = lock(&shared.checkpoint).clone();
        match self.deferred {
            None => {
                cp.advance(last);
                // Opening and replay start reading past it next time.
                if let Some(end) = self.batch_end.filter(|e| e.seq == last && cp.seq == last) {
                    cp.resume = Some(end);
                }
            }
            Some(first_waiting) => {
                cp.advance(first_waiting - 1);
                // A table with no waiting entry since the pass began is
                // done up to `last`; a waiting table is not marked.
                let done = outcome
                    .applied
                    .iter()
                    .chain(&outcome.already_dead)
                    .map(|e| &e.table)
                    .chain(outcome.dead.iter().map(|d| &d.entry.table));
                for table in done {
                    if !self.deferred_tables.contains(table) {
                        cp.tables.insert(table.clone(), last);
                    }
                }
                // `+seq` lines a table mark now covers are redundant.
                for e in &outcome.applied {
                    if cp.tables.get(&e.table).is_some_and(|w| e.seq <= *w) {
                        cp.applied.remove(&e.seq);
                    }
                }
            }
        }
        let old_seq = lock(&shared.checkpoint).seq;
        let cp = super::persist::persist(&shared, outcome.dead.clone(), cp, old_seq).await?;
        self.dead.extend(outcome.dead.iter().map(|d| d.entry.seq));
        *lock(&shared.checkpoint) = cp;
        let counted = outcome
            .applied
            .iter()
            .filter(|e| self.counted.contains(&e.seq))
            .count();
        // Committed entries past this batch (a retry after a failure read a
        // smaller batch) stay remembered until their batch finishes.
        self.committed.retain(|s| *s > last);
        self.counted.retain(|s| *s > last);
        // While their entries are in the index, reads of these keys are
        // answered from the journal: the caches are brought in line with
        // the primary before they leave it.
        self.invalidate_caches(&outcome).await;
        self.account(outcome, counted);
        Ok(())
    }

    /// Drops the keys of a batch's applied and refused entries from the
    /// plans' caches: a cache may hold a journaled row replay refused, or a
    /// row from before a write whose cache step a crash skipped.
    async fn invalidate_caches(&self, outcome: &Outcome<'_>) {
        let caches = self.journal.caches();
        if caches.is_empty() {
            return;
        }
        let mut by_table: std::collections::BTreeMap<&str, Vec<crate::Key>> = Default::default();
        let entries = outcome
            .applied
            .iter()
            .chain(&outcome.already_dead)
            .copied()
            .chain(outcome.dead.iter().map(|d| &d.entry));
        for e in entries {
            by_table.entry(&e.table).or_default().push(e.key.clone());
        }
        for (table, keys) in by_table {
            if let Some(schema) = self.journal.schema_of(table) {
                Journal::invalidate_in(&caches, schema, keys).await;
            }
        }
    }

    /// Counters, the pending index and count, dead-letter events and the
    /// mode, once a batch's outcome is durable.
    fn account(&mut self, outcome: Outcome<'_>, counted: usize) {
        let shared = &self.journal.shared;
        let progressed = outcome.done() > 0;
        let done = outcome.done() - counted;
        shared
            .replayed
            .fetch_add(outcome.applied.len() as u64, Ordering::Relaxed);
        shared
            .dead_lettered
            .fetch_add(outcome.dead.len() as u64, Ordering::Relaxed);
        shared.index.remove_done(
            outcome
                .applied
                .iter()
                .chain(&outcome.already_dead)
                .copied()
                .chain(outcome.dead.iter().map(|d| &d.entry)),
        );
        for letter in outcome.dead {
            tracing::warn!(target: "octopus::journal", seq = letter.entry.seq, table = %letter.entry.table, key = %letter.entry.key, error = %letter.error, "journal entry refused by the primary: kept as a dead letter");
            let _ = shared.dead_tx.send(letter);
        }
        if self.deferred.is_none() {
            *lock(&shared.replay_error) = None;
        }
        // Counted first, the mode next, the drain's waiters last: whoever
        // is told the journal drained (a mode watcher, the log line,
        // `drained`) finds nothing pending, and whom this wakes finds the
        // mode set.
        let left = self.journal.retire(done as u64);
        if progressed {
            self.breaker.store_answered();
            self.backoff = MIN_BACKOFF;
            self.limit = (self.limit * 2).min(shared.options.replay_batch);
            self.journal.set_mode(if left == 0 {
                Mode::Healthy
            } else {
                Mode::Draining
            });
        }
        if done > 0 {
            self.journal.wake_drained();
        }
    }
}

/// A cursor after a read, and what it read.
type Read = (Cursor, Result<Vec<Entry>>);

/// Reads up to `limit` entries up to `up_to` on a blocking thread.
fn spawn_read(mut cursor: Cursor, journal: &Journal, up_to: u64, limit: usize) -> JoinHandle<Read> {
    let dir = journal.shared.dir.clone();
    // After `up_to`: a failure before the batch that made `up_to` durable
    // is seen.
    let failures = journal.shared.write_failures.load(Ordering::SeqCst);
    tokio::task::spawn_blocking(move || {
        let batch = cursor.read(&dir, up_to, failures, limit);
        (cursor, batch)
    })
}
