//! Opening a journal: its directory lock, recovery, the checkpoint check,
//! and the writer thread.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, RwLock, mpsc};

use tokio::sync::{Notify, broadcast, watch};

use super::checkpoint::Checkpoint;
use super::index::{Index, KeyLocks};
use super::lifecycle::WriterHandle;
use super::options::{Durability, JournalOptions};
use super::{Journal, Shared, journal_error, recovery, segment, verify, writer};
use crate::Result;
use crate::fallback::Mode;

fn take_lock(dir: &Path) -> Result<fs::File> {
    let lock_path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| segment::io_error(&lock_path, None, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(journal_error(
            dir,
            "the journal is open in another process (or another Journal in this one); \
             only one may append to it",
        )),
        Err(fs::TryLockError::Error(e)) => Err(segment::io_error(&lock_path, None, e)),
    }
}

impl Journal {
    /// Whether a journal could be opened in `dir` now, without opening it:
    /// the directory exists (or can be created) and is writable, and no
    /// process holds the journal's lock. An error says which and why; the
    /// check takes the lock for a moment and creates nothing but the
    /// directory and its lock file.
    pub fn check_dir(dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| segment::io_error(dir, None, e))?;
        let probe = dir.join(".octopus-write-check");
        fs::write(&probe, b"ok").map_err(|e| segment::io_error(&probe, None, e))?;
        fs::remove_file(&probe).map_err(|e| segment::io_error(&probe, None, e))?;
        drop(take_lock(dir)?);
        Ok(())
    }

    /// Opens (creating if needed) the journal in `dir`, recovering it:
    /// see the module docs. Fails if another process has it open.
    pub fn open(dir: impl AsRef<Path>, options: JournalOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| segment::io_error(&dir, None, e))?;
        let lock = take_lock(&dir)?;
        let stored = Checkpoint::read(&dir)?;
        let segments = segment::list(&dir)?;
        let index = Index::default();
        let as_read = stored
            .as_ref()
            .map(|s| s.checkpoint.clone())
            .unwrap_or_default();
        let synced = options.durability == Durability::Fsync;
        let recovered =
            recovery::recover(&dir, &segments, &as_read, synced, &mut |e, position| {
                index.apply(std::iter::once((index.key(&e.table, &e.key), position)));
            })?;
        let verify::Verified {
            mut checkpoint,
            new_segment,
        } = verify::verify(&dir, stored, &recovered)?;
        // A place the segments no longer agree with is not used again
        // (replay's cursor would trust it).
        if !recovered.resumed {
            checkpoint.resume = None;
        }
        let last_seq = recovered.last.unwrap_or(0).max(checkpoint.highest());
        let pending = recovered.pending;
        if pending > 0 {
            tracing::info!(target: "octopus::journal", dir = %dir.display(), pending, "journal opened with pending entries");
        }
        let current = if new_segment {
            None
        } else {
            writer::reopen_last(&segments)?
        };
        let initial_mode = if pending > 0 {
            Mode::Journaling
        } else {
            Mode::Healthy
        };
        let (exited_tx, exited_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            options,
            last_seq: AtomicU64::new(last_seq),
            durable_seq: AtomicU64::new(last_seq),
            write_failures: AtomicU64::new(0),
            index,
            checkpoint: Mutex::new(checkpoint),
            outstanding: AtomicI64::new(pending as i64),
            locks: KeyLocks::default(),
            wake: Notify::new(),
            appended: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            replay_error: Mutex::new(None),
            mode: watch::channel(initial_mode).0,
            dead_tx: broadcast::channel(1024).0,
            dead_file: Mutex::new(()),
            schemas: RwLock::default(),
            caches: RwLock::default(),
            registrations: AtomicU64::new(0),
            torn_tail: recovered.truncated.clone(),
            replayer: Mutex::new(None),
            drain: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let owned = writer::Owned {
            lock,
            exited: exited_tx,
        };
        let thread = writer::spawn(shared.clone(), rx, current, owned)
            .map_err(|e| segment::io_error(&dir, None, e))?;
        let writer = Arc::new(WriterHandle {
            tx,
            exited: exited_rx,
            thread: Mutex::new(Some(thread)),
        });
        Ok(Journal { shared, writer })
    }
}
