//! The journal's writer thread: assigns sequence numbers, appends lines,
//! and shares one fsync among every append queued at that moment (group
//! commit) before acknowledging them.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::{OwnedMutexGuard, oneshot, watch};

use super::entry;
use super::index::{IndexUpdate, Position};
use super::segment;
use super::{Durability, Shared};

/// Appends committed together at most.
const MAX_BATCH: usize = 4096;

pub(super) struct Append {
    pub body: String,
    pub index: IndexUpdate,
    pub reply: oneshot::Sender<Result<u64, String>>,
    /// The key's lock, released once the entry is in the index (or failed).
    pub _key_lock: Option<OwnedMutexGuard<()>>,
}

/// What the writer thread receives.
pub(super) enum Msg {
    Append(Append),
    /// Stop: sync, release the directory lock, and say so.
    Close,
}

/// What the thread owns besides the channel: the directory lock (released
/// when the thread ends, so a closed journal can be reopened at once) and
/// the signal that it has ended.
pub(super) struct Owned {
    pub lock: File,
    pub exited: watch::Sender<bool>,
}

pub(super) struct Segment {
    pub file: File,
    pub size: u64,
    /// Its first sequence number (its name).
    pub first: u64,
}

pub(super) fn spawn(
    shared: Arc<Shared>, rx: mpsc::Receiver<Msg>, current: Option<Segment>, owned: Owned,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("octopus-journal".into())
        .spawn(move || {
            run(&shared, rx, current);
            drop(owned.lock);
            owned.exited.send_replace(true);
        })
}

/// The next append, or `None` once the journal is closed (or dropped).
fn next(msg: Result<Msg, ()>) -> Option<Append> {
    match msg {
        Ok(Msg::Append(a)) => Some(a),
        Ok(Msg::Close) | Err(()) => None,
    }
}

/// The last segment, opened for appending, if there is one.
pub(super) fn reopen_last(
    segments: &[(u64, std::path::PathBuf)],
) -> crate::Result<Option<Segment>> {
    let Some((first, path)) = segments.last() else {
        return Ok(None);
    };
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| segment::io_error(path, None, e))?;
    let size = file
        .metadata()
        .map_err(|e| segment::io_error(path, None, e))?
        .len();
    Ok(Some(Segment {
        file,
        size,
        first: *first,
    }))
}

fn open_segment(dir: &Path, first_seq: u64) -> std::io::Result<Segment> {
    let path = segment::path(dir, first_seq);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    // Make the new file's name durable before anything in it is acknowledged.
    File::open(dir)?.sync_all()?;
    Ok(Segment {
        file,
        size: 0,
        first: first_seq,
    })
}

/// What the writer thread carries from one group commit to the next.
struct WriterState {
    current: Option<Segment>,
    last_sync: Instant,
    unsynced: bool,
    /// Set by a failed sync (or a failed write that could not be cut off):
    /// every later append fails until the journal is reopened.
    poisoned: bool,
    /// The last entry written before appends that failed, until the next
    /// group commit is written (its lines say so: see `Entry::prev`).
    gap_after: Option<u64>,
}

/// The writer thread: gathers a group commit, writes it, answers its
/// appenders, until the journal closes.
fn run(shared: &Shared, rx: mpsc::Receiver<Msg>, current: Option<Segment>) {
    let mut w = WriterState {
        current,
        last_sync: Instant::now(),
        unsynced: false,
        poisoned: false,
        gap_after: None,
    };
    while let Some((batch, closing)) = w.next_batch(shared, &rx) {
        let outcome = if w.poisoned {
            Err(std::io::Error::other(
                "appends stopped after a failed sync (or a failed write that could not be cut off); reopen the journal",
            ))
        } else {
            write_batch(
                shared,
                &mut w.current,
                (&batch, &mut w.gap_after),
                &mut w.last_sync,
                (&mut w.unsynced, &mut w.poisoned),
            )
        };
        answer(shared, batch, outcome);
        if closing {
            break;
        }
    }
    if let Some(seg) = &w.current {
        let _ = seg.file.sync_all();
    }
}

impl WriterState {
    /// The next group commit (the appends already queued, up to
    /// `MAX_BATCH`) and whether a close follows it; `None` once the
    /// journal is closed. Under `Durability::Interval`, an idle interval
    /// syncs what was written.
    fn next_batch(
        &mut self, shared: &Shared, rx: &mpsc::Receiver<Msg>,
    ) -> Option<(Vec<Append>, bool)> {
        let first = loop {
            match shared.options.durability {
                Durability::Interval(every) if self.unsynced => match rx.recv_timeout(every) {
                    Ok(Msg::Append(a)) => break a,
                    Ok(Msg::Close) | Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                    Err(mpsc::RecvTimeoutError::Timeout) => self.sync_idle(),
                },
                _ => break next(rx.recv().map_err(drop))?,
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Append(a)) => batch.push(a),
                Ok(Msg::Close) => return Some((batch, true)),
                Err(_) => break,
            }
        }
        Some((batch, false))
    }

    /// Syncs the current segment after an idle interval.
    fn sync_idle(&mut self) {
        let Some(seg) = &self.current else {
            return;
        };
        match seg.file.sync_data() {
            Ok(()) => {
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
            Err(e) => {
                // After a failed sync nothing in the page cache is trusted
                // (see `undo`).
                tracing::error!(target: "octopus::journal", error = %e, "journal sync failed: appends stopped until the journal is reopened");
                self.poisoned = true;
                self.unsynced = false;
            }
        }
    }
}

/// Indexes a written batch and answers its appenders, or fails them all.
fn answer(shared: &Shared, batch: Vec<Append>, outcome: std::io::Result<Written>) {
    match outcome {
        Ok(Written { first_seq, lines }) => {
            shared.index.apply(batch.iter().zip(lines).enumerate().map(
                |(i, (a, (segment, offset)))| {
                    let seq = first_seq + i as u64;
                    let position = Position::new(seq, a.index.put, segment, offset);
                    (a.index.key.clone(), position)
                },
            ));
            let last = first_seq + batch.len() as u64 - 1;
            shared.durable_seq.store(last, Ordering::SeqCst);
            for (i, a) in batch.into_iter().enumerate() {
                let _ = a.reply.send(Ok(first_seq + i as u64));
            }
            shared.wake.notify_one();
        }
        Err(e) => {
            let message = e.to_string();
            tracing::error!(target: "octopus::journal", error = %message, "journal append failed");
            // The callers may be gone: the count is the writer's to fix.
            shared
                .outstanding
                .fetch_sub(batch.len() as i64, Ordering::SeqCst);
            shared.drain.notify_waiters();
            for a in batch {
                let _ = a.reply.send(Err(message.clone()));
            }
        }
    }
}

/// A batch written: its first sequence number, and where each line is
/// (segment, byte offset).
struct Written {
    first_seq: u64,
    lines: Vec<(u64, u64)>,
}

/// Writes the batch's lines. Its sequence numbers are taken whatever
/// happens: if the write fails, they are never used again (the next group
/// commit's lines name the entry before the gap, `gap_after`).
fn write_batch(
    shared: &Shared, current: &mut Option<Segment>,
    (batch, gap_after): (&[Append], &mut Option<u64>), last_sync: &mut Instant,
    (unsynced, poisoned): (&mut bool, &mut bool),
) -> std::io::Result<Written> {
    let before = shared.last_seq.load(Ordering::SeqCst);
    let first_seq = before + 1;
    let last = before + batch.len() as u64;
    let written = write_lines(
        shared,
        current,
        batch,
        *gap_after,
        last_sync,
        (unsynced, poisoned),
    );
    if written.is_err() {
        gap_after.get_or_insert(before);
    } else {
        *gap_after = None;
    }
    shared.last_seq.store(last, Ordering::SeqCst);
    let (seg_first, at, spans) = written?;
    let lines = spans.into_iter().map(|s| (seg_first, at + s)).collect();
    Ok(Written { first_seq, lines })
}

/// Writes the lines of the batch numbered from `last_seq + 1`: the
/// segment written, where the batch starts in it, and where each line
/// starts in the batch.
fn write_lines(
    shared: &Shared, current: &mut Option<Segment>, batch: &[Append], prev: Option<u64>,
    last_sync: &mut Instant, (unsynced, poisoned): (&mut bool, &mut bool),
) -> std::io::Result<(u64, u64, Vec<u64>)> {
    let first_seq = shared.last_seq.load(Ordering::SeqCst) + 1;
    let mut bytes = Vec::with_capacity(batch.iter().map(|a| a.body.len() + 64).sum());
    let mut spans = Vec::with_capacity(batch.len());
    for (i, a) in batch.iter().enumerate() {
        let line = entry::line_in_batch(first_seq + i as u64, first_seq, prev, &a.body);
        spans.push(bytes.len() as u64);
        bytes.extend_from_slice(&line);
    }
    // Under 4 GiB, whatever the setting: the index keeps 32-bit offsets.
    let limit = shared.options.segment_bytes.min(u64::from(u32::MAX));
    let rotate = current
        .as_ref()
        .is_none_or(|s| s.size > 0 && s.size + bytes.len() as u64 > limit);
    if rotate {
        if let Some(old) = current.take()
            && let Err(e) = old.file.sync_all()
        {
            // As any failed sync (see `undo`).
            *poisoned = true;
            return Err(std::io::Error::new(
                e.kind(),
                format!(
                    "syncing the full segment failed ({e}): after a failed sync the disk's state is unknown, so appends stopped until the journal is reopened"
                ),
            ));
        }
        *current = Some(open_segment(&shared.dir, first_seq)?);
    }
    let Some(seg) = current.as_mut() else {
        return Err(std::io::Error::other("no segment open"));
    };
    let written = seg
        .file
        .write_all(&bytes)
        .map_err(Failed::Write)
        .and_then(|()| {
            match shared.options.durability {
                Durability::Fsync => seg.file.sync_data(),
                Durability::Interval(every) if last_sync.elapsed() >= every => {
                    seg.file.sync_data().map(|()| {
                        *last_sync = Instant::now();
                        *unsynced = false;
                    })
                }
                Durability::Interval(_) => {
                    *unsynced = true;
                    Ok(())
                }
                Durability::None => Ok(()),
            }
            .map_err(Failed::Sync)
        });
    if let Err(e) = written {
        return Err(undo(shared, seg, e, poisoned));
    }
    let at = seg.size;
    seg.size += bytes.len() as u64;
    Ok((seg.first, at, spans))
}

/// How a batch failed.
enum Failed {
    /// `write` failed (a full disk, say): the page cache holds what it
    /// holds, and cutting the file back is trustworthy.
    Write(std::io::Error),
    /// `fsync` failed: what the disk holds is unknown, and a later sync
    /// may report success for pages it never wrote (PostgreSQL's
    /// "fsyncgate").
    Sync(std::io::Error),
}

/// Undoes a failed batch. Its bytes are cut off the segment, durably (the
/// next batch is written where they were, with new sequence numbers: none
/// of the failed ones was acknowledged or made visible to replay, which
/// reads only up to the durable end, and readers drop what they buffered,
/// as its bytes may be there). After a failed
/// sync, or if the cut fails, nothing in the page cache is trusted:
/// appending stops until the journal is reopened, and recovery then reads
/// what the disk really holds.
fn undo(shared: &Shared, seg: &mut Segment, failed: Failed, poisoned: &mut bool) -> std::io::Error {
    // The cut is synced: a crash must not bring the failed lines back (the
    // kernel may have written them out already).
    let cut = seg
        .file
        .set_len(seg.size)
        .and_then(|()| seg.file.sync_data());
    shared.write_failures.fetch_add(1, Ordering::SeqCst);
    match (failed, cut) {
        (Failed::Write(e), Ok(())) => e,
        (Failed::Write(e), Err(cut)) => {
            *poisoned = true;
            std::io::Error::new(
                e.kind(),
                format!(
                    "{e}; cutting the failed write off failed too ({cut}): appends stopped until the journal is reopened"
                ),
            )
        }
        (Failed::Sync(e), _) => {
            *poisoned = true;
            std::io::Error::new(
                e.kind(),
                format!(
                    "syncing failed ({e}): after a failed sync the disk's state is unknown, so appends stopped until the journal is reopened"
                ),
            )
        }
    }
}
