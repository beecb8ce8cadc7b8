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

use tokio::sync::oneshot;

use super::entry;
use super::segment;
use super::{Durability, Shared};

/// Appends committed together at most.
const MAX_BATCH: usize = 4096;

pub(super) struct Append {
    pub body: String,
    pub index: super::IndexUpdate,
    pub reply: oneshot::Sender<Result<u64, String>>,
}

pub(super) struct Segment {
    pub file: File,
    pub size: u64,
}

pub(super) fn spawn(
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Append>,
    current: Option<Segment>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("octopus-journal".into())
        .spawn(move || run(shared, rx, current))
}

fn open_segment(dir: &Path, first_seq: u64) -> std::io::Result<Segment> {
    let path = segment::path(dir, first_seq);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    // Make the new file's name durable before anything in it is acknowledged.
    File::open(dir)?.sync_all()?;
    Ok(Segment { file, size: 0 })
}

fn run(shared: Arc<Shared>, rx: mpsc::Receiver<Append>, mut current: Option<Segment>) {
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let first = match shared.options.durability {
            Durability::Interval(every) if unsynced => match rx.recv_timeout(every) {
                Ok(a) => a,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(seg) = &current
                        && seg.file.sync_data().is_ok()
                    {
                        unsynced = false;
                        last_sync = Instant::now();
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            _ => match rx.recv() {
                Ok(a) => a,
                Err(_) => break,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let outcome = write_batch(&shared, &mut current, &batch, &mut last_sync, &mut unsynced);
        match outcome {
            Ok(first_seq) => {
                {
                    let mut index = shared.lock_index();
                    for (i, a) in batch.iter().enumerate() {
                        super::apply_index(&mut index, first_seq + i as u64, &a.index);
                    }
                }
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
                for a in batch {
                    let _ = a.reply.send(Err(message.clone()));
                }
            }
        }
    }
    if let Some(seg) = &current {
        let _ = seg.file.sync_all();
    }
}

/// Writes the batch's lines; returns the first sequence number used.
fn write_batch(
    shared: &Shared,
    current: &mut Option<Segment>,
    batch: &[Append],
    last_sync: &mut Instant,
    unsynced: &mut bool,
) -> std::io::Result<u64> {
    let first_seq = shared.last_seq.load(Ordering::SeqCst) + 1;
    let mut bytes = Vec::with_capacity(batch.iter().map(|a| a.body.len() + 48).sum());
    for (i, a) in batch.iter().enumerate() {
        bytes.extend_from_slice(&entry::line(first_seq + i as u64, &a.body));
    }
    let rotate = current
        .as_ref()
        .is_none_or(|s| s.size > 0 && s.size + bytes.len() as u64 > shared.options.segment_bytes);
    if rotate {
        if let Some(old) = current.take() {
            old.file.sync_all()?;
        }
        *current = Some(open_segment(&shared.dir, first_seq)?);
    }
    let Some(seg) = current.as_mut() else {
        return Err(std::io::Error::other("no segment open"));
    };
    if let Err(e) = seg.file.write_all(&bytes) {
        // Leave no partial line behind: later entries must follow whole
        // lines, or recovery would see corruption in the middle.
        seg.file.set_len(seg.size)?;
        return Err(e);
    }
    match shared.options.durability {
        Durability::Fsync => {
            if let Err(e) = seg.file.sync_data() {
                seg.file.set_len(seg.size)?;
                return Err(e);
            }
        }
        Durability::Interval(every) => {
            if last_sync.elapsed() >= every {
                seg.file.sync_data()?;
                *last_sync = Instant::now();
                *unsynced = false;
            } else {
                *unsynced = true;
            }
        }
        Durability::None => {}
    }
    seg.size += bytes.len() as u64;
    shared
        .last_seq
        .store(first_seq + batch.len() as u64 - 1, Ordering::SeqCst);
    Ok(first_seq)
}
