//! The durable JSON journal: where writes go while the primary is down, and
//! where the primary catches up from when it returns.
//!
//! # Format
//!
//! A directory of append-only segments, `journal-<first seq>.jsonl`, one JSON
//! object per line (see [`Entry`] and the `entry` module for the exact
//! shape): sequence number, time, table, the operation with its precondition
//! (`create`; `update` or `delete` with the expected version), key, the
//! record as an object keyed by column name, the schema fingerprint, and a
//! CRC-32 per entry. A `checkpoint` file says how far replay has got;
//! segments wholly before it are removed. `dead-letters.jsonl` keeps the
//! entries the primary refused at replay, with its error. A `LOCK` file is
//! held with an exclusive lock while the journal is open (by its writer
//! thread, so [`Journal::close`] releases it), so a second process gets a
//! clear error instead of interleaving entries.
//!
//! # What `Journaled` means
//!
//! A write acknowledged as [`crate::WriteOutcome::Journaled`] is durably
//! queued (per [`Durability`]). It was checked when it was written, under a
//! per-key lock, against the key's pending entries (or, with none, the row a
//! cache held): of concurrent creates of one key one is acknowledged, of
//! concurrent updates from one version one is. It is applied when the
//! primary returns **if its precondition still holds there** (create: the
//! key is absent; update and delete: the stored version is the expected
//! one), atomically against every other writer of the primary; otherwise it
//! becomes a dead letter ([`DeadLetter`]): kept in `dead-letters.jsonl`,
//! counted, logged, and sent to [`Journal::subscribe_dead_letters`]. Entries
//! of one key apply in journal order; entries of different keys commute.
//!
//! # Durability
//!
//! [`Durability::Fsync`] (the default) syncs an entry to disk before its
//! write is acknowledged; appends queued at the same moment share one sync
//! (group commit). [`Durability::Interval`] and [`Durability::None`]
//! acknowledge before the sync and are weaker: a power loss (interval) or an
//! OS crash (none) can lose acknowledged writes.
//!
//! # Recovery
//!
//! Opening reads every segment. Damage at the end of the last segment that
//! only lines of the same, last group commit follow (a crash mid-append; a
//! power loss during a group commit, which can leave a hole and then later
//! pages) is cut off, its bytes kept in a quarantine file beside the journal
//! ([`Journal::quarantined`]); damage followed by a later group commit, or
//! anywhere else, is an error naming the segment and byte offset, never
//! skipped. The checkpoint is checked
//! against the segments (see `verify`): a missing or inconsistent one is an
//! error naming its file. Entries the checkpoint does not cover are
//! pending: indexed in memory (the latest per key), so reads see them, and
//! replayed by the plan that owns the journal once the primary answers.

mod attach;
mod batch;
mod caches;
mod chains;
mod checkpoint;
mod dead;
mod decode;
mod entry;
mod error;
mod index;
mod inspect;
mod lifecycle;
pub mod log;
mod open;
mod options;
mod persist;
mod reader;
mod recovery;
mod replay;
mod rules;
mod segment;
mod slots;
mod verify;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::{Notify, OwnedMutexGuard, broadcast, oneshot, watch};

pub use dead::DeadLetter;
pub use entry::{Entry, Op, crc32};
pub use index::Pending;
pub use inspect::{Inspection, inspect};
pub use options::{Durability, JournalOptions};

/// Decodes one journal line (without its newline), as recovery and replay
/// do: the entry, or why the line is not one. For fuzzing and tools; not a
/// stable API.
#[doc(hidden)]
pub fn decode_line(line: &[u8]) -> std::result::Result<Entry, String> {
    decode::parse(line).map_err(|e| e.to_string())
}

use checkpoint::Checkpoint;
use entry::Intent;
use index::{Index, IndexKey, IndexUpdate, KeyLocks, Position};
use lifecycle::WriterHandle;

use crate::fallback::{FallbackStats, Mode, Write};
use crate::model::now_millis;
use crate::schema::Schema;
use crate::store::key_of;
use crate::value::Key;
use crate::{Error, Result};

pub(crate) struct Shared {
    dir: PathBuf,
    options: JournalOptions,
    last_seq: AtomicU64,
    durable_seq: AtomicU64,
    /// Writes of the segment that failed: a reader drops what it buffered
    /// when this changes (the failed bytes were cut off and the next batch
    /// is written where they were).
    write_failures: AtomicU64,
    checkpoint: Mutex<Checkpoint>,
    /// Entries requested or written and not yet applied or dead-lettered.
    outstanding: AtomicI64,
    index: Index,
    locks: KeyLocks,
    /// Appends and registrations wake the replayer.
    wake: Notify,
    appended: AtomicU64,
    replayed: AtomicU64,
    dead_lettered: AtomicU64,
    replay_error: Mutex<Option<String>>,
    mode: watch::Sender<Mode>,
    dead_tx: broadcast::Sender<DeadLetter>,
    /// Serializes writers of the dead-letter file.
    dead_file: Mutex<()>,
    schemas: RwLock<HashMap<String, &'static Schema>>,
    /// The cache levels of the plans over this journal, in the order they
    /// were attached: replay invalidates what it applied or refused.
    caches: RwLock<Vec<Arc<dyn crate::fallback::CacheInvalidation>>>,
    registrations: AtomicU64,
    torn_tail: Option<recovery::Cut>,
    replayer: Mutex<Option<attach::Attached>>,
    /// Woken whenever the pending count drops.
    drain: Notify,
    /// Set by `close`: no more replayers, `drained` returns.
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section in this module leaves its data consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The journal. Cheap to clone; one per primary.
///
/// ```
/// use octopus::journal::{Journal, JournalOptions};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let journal = Journal::open(dir.path(), JournalOptions::default())?;
/// assert_eq!(journal.pending(), 0);
/// journal.close().await?; // releases the directory lock
/// # Ok::<(), octopus::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Journal {
    shared: Arc<Shared>,
    writer: Arc<WriterHandle>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.shared.dir)
            .field("pending", &self.pending())
            .finish()
    }
}

fn journal_error(dir: &Path, reason: impl Into<String>) -> Error {
    Error::journal(dir, None, reason.into())
}

impl Journal {
    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The segment and byte offset where opening cut off damage at the end
    /// of the journal (an append a crash or a power loss interrupted; never
    /// an acknowledged write), if it did.
    pub fn torn_tail(&self) -> Option<(&Path, u64)> {
        self.shared
            .torn_tail
            .as_ref()
            .map(|c| (c.segment.as_path(), c.offset))
    }

    /// The file beside the journal holding the bytes opening cut off (see
    /// [`torn_tail`](Self::torn_tail)), if it cut any: recovery never
    /// deletes bytes it cannot read.
    pub fn quarantined(&self) -> Option<&Path> {
        self.shared
            .torn_tail
            .as_ref()
            .map(|c| c.quarantine.as_path())
    }

    /// Entries written (or being written) and not yet applied or
    /// dead-lettered.
    pub fn pending(&self) -> u64 {
        self.shared.outstanding.load(Ordering::SeqCst).max(0) as u64
    }

    /// Counters.
    pub fn stats(&self) -> FallbackStats {
        FallbackStats {
            pending: self.pending(),
            appended: self.shared.appended.load(Ordering::Relaxed),
            replayed: self.shared.replayed.load(Ordering::Relaxed),
            dead_letters: self.shared.dead_lettered.load(Ordering::Relaxed),
            replay_error: lock(&self.shared.replay_error).clone(),
            mode: self.mode(),
        }
    }

    /// Makes `schema` known, so entries of its table can be replayed.
    pub fn register(&self, schema: &'static Schema) {
        let mut schemas = self
            .shared
            .schemas
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if schemas.insert(schema.table().to_owned(), schema).is_none() {
            drop(schemas);
            self.shared.registrations.fetch_add(1, Ordering::SeqCst);
            self.shared.wake.notify_one();
            self.invalidate_pending(schema, self.caches());
        }
    }

    pub(crate) fn schema_of(&self, table: &str) -> Option<&'static Schema> {
        self.shared
            .schemas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .copied()
    }

    /// Appends `write` as it is, without the checks a plan's writes get
    /// (for tools and tests; applications write through a plan). Returns
    /// the entry's sequence number once it is durable.
    pub async fn append(&self, schema: &'static Schema, write: &Write) -> Result<u64> {
        let (key, intent) = match write {
            Write::Insert(r) => (key_of(schema, r)?, Intent::Create(r)),
            Write::Update {
                record,
                expected_version,
            } => (
                key_of(schema, record)?,
                Intent::Update(record, *expected_version),
            ),
            Write::Delete {
                key,
                expected_version,
            } => (key.clone(), Intent::Delete(*expected_version)),
        };
        self.append_intent(schema, &key, (intent, None), None).await
    }

    /// Appends one entry (checked against the pending entry `after`, if
    /// any), holding the key's lock `guard` (if any) until it is in the
    /// index.
    async fn append_intent(
        &self, schema: &'static Schema, key: &Key, (intent, after): (Intent<'_>, Option<u64>),
        guard: Option<OwnedMutexGuard<()>>,
    ) -> Result<u64> {
        let body = entry::body(schema, now_millis(), key, intent, after);
        let update = IndexUpdate {
            key: self.shared.index.key(schema.table(), key),
            put: intent.record().is_some(),
        };
        self.send(body, update, guard).await
    }

    async fn send(
        &self, body: String, index: IndexUpdate, guard: Option<OwnedMutexGuard<()>>,
    ) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        let append = writer::Append {
            body,
            index,
            reply,
            _key_lock: guard,
        };
        self.shared.outstanding.fetch_add(1, Ordering::SeqCst);
        // Counted back here only when the writer never saw the append (it
        // counts back the appends it fails itself).
        let failed = |reason: String| {
            self.finished(1);
            journal_error(&self.shared.dir, reason)
        };
        if self.writer.tx.send(writer::Msg::Append(append)).is_err() {
            return Err(failed("the journal is closed".into()));
        }
        match rx.await {
            Ok(Ok(seq)) => {
                self.shared.appended.fetch_add(1, Ordering::Relaxed);
                if self.mode() == Mode::Healthy {
                    self.set_mode(Mode::Journaling);
                }
                self.shared.wake.notify_one();
                Ok(seq)
            }
            Ok(Err(reason)) => Err(journal_error(
                &self.shared.dir,
                format!("append failed: {reason}"),
            )),
            Err(_) => Err(failed("the journal is closed".into())),
        }
    }

    /// The latest pending write of `key`, if any. An entry written under
    /// another shape of the model is read by column name.
    pub fn lookup(&self, schema: &'static Schema, key: &Key) -> Result<Option<Pending>> {
        if self.pending() == 0 {
            return Ok(None);
        }
        self.lookup_indexed(schema, &self.shared.index.key(schema.table(), key))
    }

    fn lookup_indexed(&self, schema: &'static Schema, key: &IndexKey) -> Result<Option<Pending>> {
        match self.shared.index.get(key) {
            Some(position) => self.read_pending(schema, position),
            None => Ok(None),
        }
    }

    /// The pending write at `position`, read back from its segment; `None`
    /// if replay applied it meanwhile (and removed its segment).
    fn read_pending(&self, schema: &'static Schema, position: Position) -> Result<Option<Pending>> {
        if !position.put() {
            return Ok(Some(Pending::Deleted));
        }
        let Some(e) = index::read_back(&self.shared.dir, position)? else {
            return Ok(None);
        };
        index::decode(schema, &e)
            .map(Some)
            .map_err(|(seq, column, reason)| {
                journal_error(
                    &self.shared.dir,
                    format!(
                        "entry {seq} (table `{}`), column `{column}`: {reason}",
                        schema.table()
                    ),
                )
            })
    }

    /// Whether `key` has a pending entry (written or being written).
    pub(crate) fn has_pending_key(&self, schema: &'static Schema, key: &Key) -> bool {
        self.pending() > 0
            && self
                .shared
                .index
                .contains(&self.shared.index.key(schema.table(), key))
    }
}
