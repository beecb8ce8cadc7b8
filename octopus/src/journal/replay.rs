//! The replayer: drains pending entries into the primary, in order, in
//! batches, each entry applied with the primary's own semantics (see
//! [`Store::apply`]); refused entries become dead letters and the drain goes
//! on. It belongs to the journal: [`Journal::close`] stops it.
//!
//! - **Probing.** The replayer calls the primary directly, not through its
//!   breaker, on a short backoff (10 ms doubling to 100 ms), so replay starts
//!   within about 100 ms of the primary answering again whatever the
//!   breaker's `open_wait`; a batch that applies closes the breaker.
//! - **Chains.** Within a batch, the entries of one key become one change:
//!   the first entry's precondition and the last entry's row (each later
//!   entry was checked against the one before it when it was written). A
//!   refused chain dead-letters every entry in it.
//! - **Narrowing.** A batch the primary refuses as a whole (a constraint, a
//!   foreign key, a statement too large) is split in halves until the
//!   culprit is alone; it is dead-lettered, the rest applied.
//! - **Tables are independent.** Entries of a table whose model is not open
//!   in this process (or whose table does not match its model) wait; the
//!   checkpoint records per table how far the others got, so they go on.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::chains::{apply_split, change_of, dead_letters};
use super::dead::{self, DeadLetter};
use super::entry::Entry;
use super::segment::{self, Cursor};
use super::{Journal, lock};
use crate::breaker::CircuitBreaker;
use crate::fallback::Mode;
use crate::schema::Schema;
use crate::store::Store;
use crate::{Error, Result};

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// A failed batch that took at least this long is taken as too big for the
/// call deadline: the next one is half the size.
const SLOW_FAILURE: Duration = Duration::from_millis(500);

pub(super) struct Replayer {
    journal: Journal,
    name: String,
    primary: Arc<dyn Store>,
    breaker: Arc<CircuitBreaker>,
    stop: watch::Receiver<bool>,
    cursor: Cursor,
    /// The first entry since the cursor last started over that had to wait
    /// (its table's model is not open, or its table does not match).
    deferred: Option<u64>,
    deferred_tables: BTreeSet<String>,
    registrations: u64,
    ensured: HashSet<&'static str>,
    /// Sequence numbers of dead-lettered entries: a later entry checked
    /// against one of them when it was written is refused too.
    dead: HashSet<u64>,
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

/// What applying a batch did.
#[derive(Default)]
struct Outcome<'a> {
    applied: Vec<&'a Entry>,
    dead: Vec<DeadLetter>,
    waiting: Vec<&'a Entry>,
}

impl Replayer {
    pub(super) fn new(
        journal: Journal,
        primary: Arc<dyn Store>,
        breaker: Arc<CircuitBreaker>,
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
            deferred: None,
            deferred_tables: BTreeSet::new(),
            registrations: 0,
            ensured: HashSet::new(),
            dead: HashSet::new(),
            backoff: MIN_BACKOFF,
        }
    }

    pub(super) async fn run(mut self, previous: Option<JoinHandle<()>>) {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        self.start_over();
        match dead::read(&self.journal.shared.dir) {
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

    /// Reads again from the first entry the checkpoint does not cover.
    fn start_over(&mut self) {
        let from = lock(&self.journal.shared.checkpoint).seq + 1;
        self.cursor = Cursor::new(from);
        self.deferred = None;
        self.deferred_tables.clear();
        self.registrations = self.journal.shared.registrations.load(Ordering::SeqCst);
    }

    async fn step(&mut self) -> Next {
        let registrations = self.journal.shared.registrations.load(Ordering::SeqCst);
        if self.deferred.is_some() && registrations != self.registrations {
            self.start_over();
        }
        let shared = &self.journal.shared;
        if self.journal.pending() == 0 {
            self.journal.set_mode(Mode::Healthy);
            return Next::Idle(Duration::from_millis(500));
        }
        let up_to = shared.durable_seq.load(Ordering::SeqCst);
        let first = self.cursor.next_seq;
        let batch = match self.cursor.read(&shared.dir, up_to, self.limit) {
            Ok(b) => b,
            Err(e) => return self.failed(first, &e),
        };
        let Some(last) = batch.last().map(|e| e.seq) else {
            if !self.deferred_tables.is_empty() {
                self.report_waiting();
            }
            return Next::Idle(Duration::from_millis(200));
        };
        let started = Instant::now();
        let todo: Vec<&Entry> = {
            let cp = lock(&shared.checkpoint);
            batch.iter().filter(|e| !cp.done(e)).collect()
        };
        match self.apply(&todo).await {
            Ok(outcome) => match self.finish(last, outcome) {
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
        }
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

    /// Applies the entries of every table whose model is known.
    async fn apply<'a>(&mut self, todo: &[&'a Entry]) -> Result<Outcome<'a>> {
        let mut outcome = Outcome::default();
        let mut tables: Vec<(&'static Schema, Vec<&'a Entry>)> = Vec::new();
        for &e in todo {
            match self.journal.schema_of(&e.table) {
                None => outcome.waiting.push(e),
                Some(schema) => match tables.iter_mut().find(|(s, _)| std::ptr::eq(*s, schema)) {
                    Some((_, entries)) => entries.push(e),
                    None => tables.push((schema, vec![e])),
                },
            }
        }
        for (schema, entries) in tables {
            if !self.ensured.contains(schema.table()) {
                match self.primary.ensure_schema(schema).await {
                    Ok(()) => {
                        self.ensured.insert(schema.table());
                    }
                    Err(e) if e.is_unavailable() => return Err(e),
                    Err(e) => {
                        tracing::error!(target: "octopus::journal", table = schema.table(), error = %e, "entries of this table wait: its table does not fit the model");
                        *lock(&self.journal.shared.replay_error) = Some(e.to_string());
                        outcome.waiting.extend(entries);
                        continue;
                    }
                }
            }
            self.apply_table(schema, &entries, &mut outcome).await?;
        }
        Ok(outcome)
    }

    /// One table's entries: chains per key, applied conditionally.
    async fn apply_table<'a>(
        &self,
        schema: &'static Schema,
        entries: &[&'a Entry],
        outcome: &mut Outcome<'a>,
    ) -> Result<()> {
        let mut chains: Vec<Vec<&'a Entry>> = Vec::new();
        let mut by_key: HashMap<&crate::value::Key, usize> = HashMap::new();
        for &e in entries {
            match by_key.get(&e.key) {
                Some(&i) => chains[i].push(e),
                None => {
                    by_key.insert(&e.key, chains.len());
                    chains.push(vec![e]);
                }
            }
        }
        let mut changes = Vec::with_capacity(chains.len());
        let mut applicable = Vec::with_capacity(chains.len());
        for chain in chains {
            if let Some(refused) = chain[0].after.filter(|a| self.dead.contains(a)) {
                let reason = format!("it was written after entry {refused}, which was refused");
                outcome.dead.extend(dead_letters(&chain, &reason));
                continue;
            }
            match change_of(schema, &chain) {
                Ok(change) => {
                    changes.push(change);
                    applicable.push(chain);
                }
                Err(reason) => outcome.dead.extend(dead_letters(&chain, &reason)),
            }
        }
        let results = apply_split(self.primary.as_ref(), schema, &changes).await?;
        for (chain, result) in applicable.into_iter().zip(results) {
            match result {
                Ok(()) => outcome.applied.extend(chain),
                Err(e) => outcome.dead.extend(dead_letters(&chain, &e.to_string())),
            }
        }
        Ok(())
    }

    /// Makes a batch's outcome durable: dead letters first, then the
    /// checkpoint; then counters, the index, old segments and the mode.
    fn finish(&mut self, last: u64, outcome: Outcome<'_>) -> Result<()> {
        let shared = &self.journal.shared;
        {
            let _file = lock(&shared.dead_file);
            dead::append(&shared.dir, &outcome.dead)?;
        }
        self.dead.extend(outcome.dead.iter().map(|d| d.entry.seq));
        for e in &outcome.waiting {
            self.deferred.get_or_insert(e.seq);
            self.deferred_tables.insert(e.table.clone());
        }
        let mut cp = lock(&shared.checkpoint).clone();
        match self.deferred {
            None => cp.advance(last),
            Some(first_waiting) => {
                cp.advance(first_waiting - 1);
                let done = outcome
                    .applied
                    .iter()
                    .map(|e| e.table.clone())
                    .chain(outcome.dead.iter().map(|d| d.entry.table.clone()));
                for table in done {
                    cp.tables.insert(table, last);
                }
            }
        }
        cp.write(&shared.dir)
            .map_err(|e| segment::io_error(&shared.dir, None, e))?;
        let new_seq = cp.seq;
        let old_seq = std::mem::replace(&mut *lock(&shared.checkpoint), cp).seq;
        if new_seq > old_seq {
            remove_replayed_segments(&self.journal, new_seq)?;
        }
        let done = (outcome.applied.len() + outcome.dead.len()) as i64;
        shared.outstanding.fetch_sub(done, Ordering::SeqCst);
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
        if done > 0 {
            self.breaker.store_answered();
            self.backoff = MIN_BACKOFF;
            self.limit = (self.limit * 2).min(shared.options.replay_batch);
            self.journal.set_mode(if self.journal.pending() == 0 {
                Mode::Healthy
            } else {
                Mode::Draining
            });
        }
        Ok(())
    }
}

/// Removes segments that hold nothing after `seq`.
fn remove_replayed_segments(journal: &Journal, seq: u64) -> Result<()> {
    let segments = segment::list(&journal.shared.dir)?;
    for pair in segments.windows(2) {
        if pair[1].0 <= seq + 1 {
            std::fs::remove_file(&pair[0].1).map_err(|e| segment::io_error(&pair[0].1, None, e))?;
        }
    }
    Ok(())
}
