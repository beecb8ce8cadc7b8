//! The durable JSON journal: where writes go while the primary is down, and
//! where the primary catches up from when it returns.
//!
//! # Format
//!
//! A directory of append-only segments, `journal-<first seq>.jsonl`, one JSON
//! object per line (see the `entry` module for the exact shape): sequence
//! number, time, table, op (`put`/`delete`), key, the record as an object
//! keyed by column name, the schema fingerprint, and a CRC-32 per entry. A
//! `checkpoint` file holds the sequence number of the last entry replayed
//! into the primary; segments wholly before it are removed. A `LOCK` file is
//! held with an exclusive lock while the journal is open, so a second process
//! gets a clear error instead of interleaving entries.
//!
//! # Durability
//!
//! [`Durability::Fsync`] (the default) syncs an entry to disk before its
//! write is acknowledged; appends queued at the same moment share one sync
//! (group commit), so concurrency raises throughput instead of queueing on
//! the disk. [`Durability::Interval`] and [`Durability::None`] acknowledge
//! before the sync and are weaker: a power loss (interval) or an OS crash
//! (none) can lose acknowledged writes.
//!
//! # Recovery
//!
//! Opening reads every segment: a torn final entry (a crash mid-append) is
//! truncated; a damaged entry anywhere else is an error naming the segment
//! and byte offset, never skipped. Entries after the checkpoint are pending:
//! indexed in memory (the latest per key), so reads see them, and replayed
//! by the plan that owns the journal once the primary answers.

mod entry;
pub(crate) mod replay;
mod segment;
mod writer;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::Duration;

use serde_json::{Map, Value as Json};
use tokio::sync::{Notify, oneshot};

pub use entry::{Entry, Op, crc32};

use crate::fallback::{Fallback, Write, WriteOutcome};
use crate::model::now_millis;
use crate::schema::Schema;
use crate::store::{BoxFuture, key_of, version_of};
use crate::value::{Key, Record};
use crate::{Error, Result};

/// When an entry reaches the disk relative to its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Synced before acknowledging (group commit). The default, and the
    /// only mode that keeps every acknowledged write through a power loss.
    #[default]
    Fsync,
    /// Synced at most this often; acknowledged after the OS has the write.
    /// Survives a process crash, not a power loss.
    Interval(Duration),
    /// Never synced by Octopus. Survives a process crash only.
    None,
}

/// Settings of a [`Journal`].
#[derive(Debug, Clone)]
pub struct JournalOptions {
    durability: Durability,
    segment_bytes: u64,
    replay_batch: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            durability: Durability::Fsync,
            segment_bytes: 64 * 1024 * 1024,
            replay_batch: 1000,
        }
    }
}

impl JournalOptions {
    /// Sync policy (default [`Durability::Fsync`]).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Entries replayed per batch, each batch followed by a checkpoint
    /// (default 1000: one statement per batch on MySQL).
    pub fn replay_batch(mut self, n: usize) -> Self {
        self.replay_batch = n.max(1);
        self
    }

    /// Size at which a new segment is started (default 64 MiB).
    pub fn segment_bytes(mut self, n: u64) -> Self {
        self.segment_bytes = n.max(1);
        self
    }
}

/// A pending write, as reads see it during an outage.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// The latest pending write of the key stores this row.
    Put(Record),
    /// The latest pending write of the key deletes it.
    Deleted,
}

/// The latest pending entry of one key.
#[derive(Debug, Clone)]
enum Indexed {
    Put {
        seq: u64,
        fingerprint: u64,
        row: Row,
    },
    Delete {
        seq: u64,
    },
}

#[derive(Debug, Clone)]
enum Row {
    Record(Record),
    Json(Map<String, Json>),
}

impl Indexed {
    fn seq(&self) -> u64 {
        match self {
            Indexed::Put { seq, .. } | Indexed::Delete { seq } => *seq,
        }
    }
}

type IndexKey = (String, String);

/// What an append does to the index once it is durable.
pub(crate) struct IndexUpdate {
    key: IndexKey,
    value: Option<(u64, Record)>,
}

fn index_key(table: &str, key: &Key) -> IndexKey {
    let k = match key {
        Key::Int(i) => format!("n{i}"),
        Key::UInt(u) => format!("n{u}"),
        Key::Text(s) => format!("s{s}"),
    };
    (table.to_owned(), k)
}

fn apply_index(index: &mut HashMap<IndexKey, Indexed>, seq: u64, update: &IndexUpdate) {
    let value = match &update.value {
        Some((fingerprint, record)) => Indexed::Put {
            seq,
            fingerprint: *fingerprint,
            row: Row::Record(record.clone()),
        },
        None => Indexed::Delete { seq },
    };
    index.insert(update.key.clone(), value);
}

/// Counters of a journal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Entries written and not yet replayed.
    pub pending: u64,
    /// Entries appended since the journal was opened.
    pub appended: u64,
    /// Entries replayed into the primary since the journal was opened.
    pub replayed: u64,
    /// Replayed entries skipped because the primary held a newer version.
    pub conflicts: u64,
    /// Why replay is stopped, if it is (an entry that does not fit its
    /// model, say); replay retries until it fits.
    pub replay_error: Option<String>,
}

pub(crate) struct Shared {
    dir: PathBuf,
    options: JournalOptions,
    last_seq: AtomicU64,
    durable_seq: AtomicU64,
    checkpoint: AtomicU64,
    /// Entries requested or written and not yet replayed: while above zero,
    /// every write goes to the journal, so no older entry can overtake it.
    outstanding: AtomicI64,
    index: Mutex<HashMap<IndexKey, Indexed>>,
    wake: Notify,
    appended: AtomicU64,
    replayed: AtomicU64,
    conflicts: AtomicU64,
    replay_error: Mutex<Option<String>>,
    /// The primary this journal replays into, once a plan claimed it.
    owner: Mutex<Option<String>>,
    /// The torn final entry cut off when the journal was opened.
    torn_tail: Option<(PathBuf, u64)>,
}

impl Shared {
    fn lock_index(&self) -> std::sync::MutexGuard<'_, HashMap<IndexKey, Indexed>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The journal. Cheap to clone; one per primary.
///
/// ```
/// use octopus::journal::{Journal, JournalOptions};
/// let dir = std::env::temp_dir().join(format!("octopus-doc-{}", std::process::id()));
/// let journal = Journal::open(&dir, JournalOptions::default())?;
/// assert_eq!(journal.pending(), 0);
/// # drop(journal); std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), octopus::Error>(())
/// ```
#[derive(Clone)]
pub struct Journal {
    shared: Arc<Shared>,
    tx: mpsc::Sender<writer::Append>,
    schemas: Arc<RwLock<HashMap<String, &'static Schema>>>,
    cursor: Arc<Mutex<segment::Cursor>>,
    _lock: Arc<File>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.shared.dir)
            .field("pending", &self.pending())
            .finish()
    }
}

fn read_checkpoint(dir: &Path) -> Result<u64> {
    let path = dir.join("checkpoint");
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| Error::Journal {
            path: path.display().to_string(),
            offset: None,
            reason: format!("not a sequence number: {:?}", text.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(segment::io_error(&path, None, e)),
    }
}

fn write_checkpoint(dir: &Path, seq: u64) -> std::io::Result<()> {
    let tmp = dir.join("checkpoint.tmp");
    let mut f = File::create(&tmp)?;
    writeln!(f, "{seq}")?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join("checkpoint"))?;
    File::open(dir)?.sync_all()
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, recovering it:
    /// see the module docs. Fails if another process has it open.
    pub fn open(dir: impl AsRef<Path>, options: JournalOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| segment::io_error(&dir, None, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| segment::io_error(&lock_path, None, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Journal {
                    path: dir.display().to_string(),
                    offset: None,
                    reason:
                        "the journal is open in another process (or another Journal in this one); \
                             only one may append to it"
                            .into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(segment::io_error(&lock_path, None, e));
            }
        }
        let checkpoint = read_checkpoint(&dir)?;
        let segments = segment::list(&dir)?;
        let recovered = segment::recover(&segments, checkpoint)?;
        let mut index = HashMap::new();
        for e in &recovered.pending {
            let value = match &e.op {
                Op::Put(map) => Indexed::Put {
                    seq: e.seq,
                    fingerprint: e.fingerprint,
                    row: Row::Json(map.clone()),
                },
                Op::Delete => Indexed::Delete { seq: e.seq },
            };
            index.insert(index_key(&e.table, &e.key), value);
        }
        let pending = recovered.last_seq - checkpoint;
        if pending > 0 {
            tracing::info!(target: "octopus::journal", dir = %dir.display(), pending, "journal opened with pending entries");
        }
        let current = match segments.last() {
            Some((_, path)) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| segment::io_error(path, None, e))?;
                let size = file
                    .metadata()
                    .map_err(|e| segment::io_error(path, None, e))?
                    .len();
                Some(writer::Segment { file, size })
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            options,
            last_seq: AtomicU64::new(recovered.last_seq),
            durable_seq: AtomicU64::new(recovered.last_seq),
            checkpoint: AtomicU64::new(checkpoint),
            outstanding: AtomicI64::new(pending as i64),
            index: Mutex::new(index),
            wake: Notify::new(),
            appended: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            replay_error: Mutex::new(None),
            owner: Mutex::new(None),
            torn_tail: recovered.truncated.clone(),
        });
        let (tx, rx) = mpsc::channel();
        writer::spawn(shared.clone(), rx, current).map_err(|e| segment::io_error(&dir, None, e))?;
        Ok(Journal {
            shared,
            tx,
            schemas: Arc::default(),
            cursor: Arc::new(Mutex::new(segment::Cursor::new(checkpoint + 1))),
            _lock: Arc::new(lock),
        })
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The segment and byte offset where opening cut off a torn final entry
    /// (left by a crash mid-append; never an acknowledged write), if it did.
    pub fn torn_tail(&self) -> Option<(&Path, u64)> {
        self.shared
            .torn_tail
            .as_ref()
            .map(|(p, o)| (p.as_path(), *o))
    }

    /// Entries written (or being written) and not yet replayed. While this
    /// is above zero, a plan sends every write to the journal.
    pub fn pending(&self) -> u64 {
        self.shared.outstanding.load(Ordering::SeqCst).max(0) as u64
    }

    /// Counters.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            pending: self.pending(),
            appended: self.shared.appended.load(Ordering::Relaxed),
            replayed: self.shared.replayed.load(Ordering::Relaxed),
            conflicts: self.shared.conflicts.load(Ordering::Relaxed),
            replay_error: self
                .shared
                .replay_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Makes `schema` known, so entries of its table can be replayed.
    pub fn register(&self, schema: &'static Schema) {
        self.schemas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(schema.table().to_owned(), schema);
    }

    pub(crate) fn schema_of(&self, table: &str) -> Option<&'static Schema> {
        self.schemas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .copied()
    }

    /// Appends a put (`Some(record)`) or a delete of `key`, durably (per the
    /// durability setting); returns its sequence number once acknowledged.
    pub async fn append(
        &self,
        schema: &'static Schema,
        key: &Key,
        record: Option<&Record>,
    ) -> Result<u64> {
        let body = entry::body(schema, now_millis(), key, record);
        let (reply, rx) = oneshot::channel();
        let append = writer::Append {
            body,
            index: IndexUpdate {
                key: index_key(schema.table(), key),
                value: record.map(|r| (schema.fingerprint(), r.clone())),
            },
            reply,
        };
        self.shared.outstanding.fetch_add(1, Ordering::SeqCst);
        let failed = |reason: String| {
            self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
            Error::Journal {
                path: self.shared.dir.display().to_string(),
                offset: None,
                reason,
            }
        };
        if self.tx.send(append).is_err() {
            return Err(failed("the journal writer has stopped".into()));
        }
        match rx.await {
            Ok(Ok(seq)) => {
                self.shared.appended.fetch_add(1, Ordering::Relaxed);
                Ok(seq)
            }
            Ok(Err(reason)) => Err(failed(format!("append failed: {reason}"))),
            Err(_) => Err(failed("the journal writer has stopped".into())),
        }
    }

    /// The latest pending write of `key`, if any. An entry written under
    /// another shape of the model is read by column name.
    pub fn lookup(&self, schema: &'static Schema, key: &Key) -> Result<Option<Pending>> {
        if self.pending() == 0 {
            return Ok(None);
        }
        let found = self
            .shared
            .lock_index()
            .get(&index_key(schema.table(), key))
            .cloned();
        Ok(match found {
            None => None,
            Some(Indexed::Delete { .. }) => Some(Pending::Deleted),
            Some(Indexed::Put {
                row: Row::Record(r),
                fingerprint,
                ..
            }) if fingerprint == schema.fingerprint() => Some(Pending::Put(r)),
            Some(Indexed::Put { row, seq, .. }) => {
                let map = match row {
                    Row::Json(m) => m,
                    Row::Record(r) => entry::record_json(schema, &r),
                };
                let record =
                    entry::record_from_json(schema, &map).map_err(|(column, reason)| {
                        Error::Journal {
                            path: self.shared.dir.display().to_string(),
                            offset: None,
                            reason: format!(
                                "entry {seq} (table `{}`), column `{column}`: {reason}",
                                schema.table()
                            ),
                        }
                    })?;
                Some(Pending::Put(record))
            }
        })
    }

    /// Up to `limit` pending entries after the last replayed one, in order
    /// (only acknowledged entries).
    pub(crate) fn next_batch(&self) -> Result<Vec<Entry>> {
        let limit = self.shared.options.replay_batch;
        let up_to = self.shared.durable_seq.load(Ordering::SeqCst);
        let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let from = self.shared.checkpoint.load(Ordering::SeqCst) + 1;
        if cursor.next_seq != from {
            *cursor = segment::Cursor::new(from);
        }
        let batch = cursor.read(&self.shared.dir, up_to, limit);
        if batch.is_err() {
            *cursor = segment::Cursor::new(from);
        }
        batch
    }

    /// Records that every entry up to `seq` is in the primary: durably (a
    /// crash after this never replays them again), then drops them from the
    /// index and removes segments that hold nothing newer.
    pub(crate) fn checkpoint(&self, seq: u64, entries: u64, conflicts: u64) -> Result<()> {
        write_checkpoint(&self.shared.dir, seq)
            .map_err(|e| segment::io_error(&self.shared.dir, None, e))?;
        self.shared.checkpoint.store(seq, Ordering::SeqCst);
        self.shared.lock_index().retain(|_, v| v.seq() > seq);
        self.shared
            .outstanding
            .fetch_sub(entries as i64, Ordering::SeqCst);
        self.shared.replayed.fetch_add(entries, Ordering::Relaxed);
        self.shared
            .conflicts
            .fetch_add(conflicts, Ordering::Relaxed);
        self.set_replay_error(None);
        // A segment can go once the next one starts at or before seq + 1.
        let segments = segment::list(&self.shared.dir)?;
        for pair in segments.windows(2) {
            if pair[1].0 <= seq + 1 {
                fs::remove_file(&pair[0].1).map_err(|e| segment::io_error(&pair[0].1, None, e))?;
            }
        }
        Ok(())
    }

    /// Claims the journal for the plan over `primary`: `Ok(true)` for the
    /// first claim (that plan runs the replayer), `Ok(false)` for another
    /// plan over the same primary, an error for a different primary.
    pub(crate) fn claim(&self, primary: &str) -> Result<bool> {
        let mut owner = self.shared.owner.lock().unwrap_or_else(|e| e.into_inner());
        match owner.as_deref() {
            None => {
                *owner = Some(primary.to_owned());
                Ok(true)
            }
            Some(p) if p == primary => Ok(false),
            Some(p) => Err(Error::Config {
                key: self.shared.dir.display().to_string(),
                reason: format!(
                    "this journal replays into `{p}`; a plan over `{primary}` needs its own journal"
                ),
            }),
        }
    }

    pub(crate) fn wake(&self) {
        self.shared.wake.notify_one();
    }

    pub(crate) fn set_replay_error(&self, error: Option<String>) {
        *self
            .shared
            .replay_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Waits until something is appended (or `timeout` passes).
    pub(crate) async fn wait_for_appends(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.shared.wake.notified()).await;
    }

    /// The write a fallback receives, appended.
    async fn append_write(&self, schema: &'static Schema, write: &Write) -> Result<()> {
        match write {
            Write::Insert(record) => {
                let key = key_of(schema, record)?;
                if let Some(Pending::Put(_)) = self.lookup(schema, &key)? {
                    return Err(Error::AlreadyExists {
                        table: schema.table(),
                        key: key.to_string(),
                    });
                }
                self.append(schema, &key, Some(record)).await?;
            }
            Write::Update {
                record,
                expected_version,
            } => {
                let key = key_of(schema, record)?;
                match self.lookup(schema, &key)? {
                    Some(Pending::Deleted) => {
                        return Err(Error::NotFound {
                            table: schema.table(),
                            key: key.to_string(),
                        });
                    }
                    Some(Pending::Put(current)) => {
                        if let (Some(expected), Some(actual)) =
                            (expected_version, version_of(schema, &current))
                            && *expected != actual
                        {
                            return Err(Error::Conflict {
                                table: schema.table(),
                                key: key.to_string(),
                                expected: *expected,
                                actual,
                            });
                        }
                    }
                    None => {}
                }
                self.append(schema, &key, Some(record)).await?;
            }
            Write::Delete(key) => {
                self.append(schema, key, None).await?;
            }
        }
        Ok(())
    }
}

/// The journal as a plan's fallback: writes the primary cannot take are
/// appended, and acknowledged as [`WriteOutcome::Journaled`].
///
/// What a journaled write can and cannot check: a create of a key with a
/// pending put is [`Error::AlreadyExists`], an update of a key whose pending
/// write deleted it is [`Error::NotFound`], and an update whose version does
/// not match the pending row is [`Error::Conflict`]. Against rows only the
/// primary holds nothing can be checked during an outage: such a create is
/// replayed as an upsert, and a versioned update is replayed only if the
/// primary's row is not newer (a skipped entry is counted as a conflict).
impl Fallback for Journal {
    fn write<'a>(
        &'a self,
        schema: &'static Schema,
        write: &'a Write,
        _error: Error,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        Box::pin(async move {
            self.append_write(schema, write).await?;
            Ok(WriteOutcome::Journaled)
        })
    }
}

pub(crate) use entry::{key_from_json, record_from_json};
