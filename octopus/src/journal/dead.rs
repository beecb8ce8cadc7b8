//! Dead letters: entries the primary refused at replay (their precondition
//! no longer held, or a constraint, a foreign key, a size limit refused
//! them), kept beside the journal with the primary's error, so the drain
//! goes on and nothing is dropped silently.
//!
//! `dead-letters.jsonl` holds one JSON object per line:
//! `{"entry":{...},"error":"...","at":1795297488052}`, where `entry` is the
//! journal entry in the shape of its line (without the checksum).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;

use serde_json::{Map, Value as Json};

use tokio::sync::broadcast;

use super::entry::{self, Entry};
use super::index::IndexUpdate;
use super::segment::{self, io_error};
use super::{Journal, lock};
use crate::{Error, Result};

/// The file's name in the journal directory.
pub(super) const FILE: &str = "dead-letters.jsonl";

/// A journal entry the primary refused at replay, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The entry as it was journaled: its operation, precondition and row.
    pub entry: Entry,
    /// The primary's error (or why the entry could not be applied at all).
    pub error: String,
    /// When it was refused, unix milliseconds.
    pub at: i64,
    /// The sequence number of the entry it was appended again as, once
    /// requeued ([`Journal::requeue_dead_letters`]). A requeued letter
    /// stays in the file, so entries written after the refused one are
    /// still known to follow a refused entry.
    pub requeued_as: Option<u64>,
}

impl DeadLetter {
    /// The dead letter as one JSON object (the shape of its line).
    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("entry".into(), Json::Object(entry::entry_json(&self.entry)));
        m.insert("error".into(), Json::from(self.error.as_str()));
        m.insert("at".into(), Json::from(self.at));
        if let Some(seq) = self.requeued_as {
            m.insert("requeued_as".into(), Json::from(seq));
        }
        Json::Object(m)
    }

    /// A dead letter from the JSON object [`DeadLetter::to_json`] made
    /// (a line of the dead-letter file, a message of a shared journal's
    /// dead-letter stream), or why it is not one.
    pub fn from_json(json: &Json) -> std::result::Result<Self, String> {
        let entry = json
            .get("entry")
            .and_then(Json::as_object)
            .ok_or("no `entry` object")?;
        Ok(DeadLetter {
            entry: entry::entry_from_json(entry)?,
            error: json
                .get("error")
                .and_then(Json::as_str)
                .ok_or("no `error` text")?
                .to_owned(),
            at: json
                .get("at")
                .and_then(Json::as_i64)
                .ok_or("no `at` time")?,
            requeued_as: json.get("requeued_as").and_then(Json::as_u64),
        })
    }
}

fn line(letter: &DeadLetter) -> Vec<u8> {
    let mut out = letter.to_json().to_string().into_bytes();
    out.push(b'\n');
    out
}

/// Cuts a last line a crash left without its newline (its letters were
/// not checkpointed: replay refuses their entries again), so the next
/// append starts on a line of its own.
fn cut_torn_tail(path: &Path) -> Result<()> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path, None, e)),
    };
    if bytes.last().is_none_or(|b| *b == b'\n') {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(target: "octopus::journal", file = %path.display(), offset = keep, "cut a torn dead letter");
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_error(path, None, e))?;
    f.set_len(keep as u64)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error(path, Some(keep as u64), e))
}

/// Appends `letters` durably (before the checkpoint passes their entries).
pub(super) fn append(dir: &Path, letters: &[DeadLetter]) -> Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    let path = dir.join(FILE);
    cut_torn_tail(&path)?;
    let bytes: Vec<u8> = letters.iter().flat_map(line).collect();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io_error(&path, None, e))?;
    f.write_all(&bytes).map_err(|e| io_error(&path, None, e))?;
    f.sync_data().map_err(|e| io_error(&path, None, e))?;
    // A new file's name must be durable too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, None, e))
}

/// Every dead letter, oldest first. A line a crash cut short at the end of
/// the file is ignored (its entry is not yet checkpointed, so replay refuses
/// it again); damage elsewhere is an error naming the offset.
pub(super) fn read(dir: &Path) -> Result<Vec<DeadLetter>> {
    let path = dir.join(FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&path, None, e)),
    };
    let mut out = Vec::new();
    let mut offset = 0u64;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error(&path, Some(offset), e))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        let parsed = serde_json::from_slice::<Json>(&buf[..n - 1])
            .map_err(|e| e.to_string())
            .and_then(|j| DeadLetter::from_json(&j));
        match parsed {
            Ok(letter) => out.push(letter),
            Err(reason) => {
                return Err(Error::journal(
                    path,
                    Some(offset),
                    format!("damaged dead letter: {reason}"),
                ));
            }
        }
        offset += n as u64;
    }
    Ok(out)
}

/// Replaces the file with `keep`, atomically and durably.
pub(super) fn rewrite(dir: &Path, keep: &[DeadLetter]) -> Result<()> {
    let path = dir.join(FILE);
    let tmp = dir.join("dead-letters.tmp");
    let bytes: Vec<u8> = keep.iter().flat_map(line).collect();
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| io_error(&path, None, e))
}

impl Journal {
    /// Every dead letter not yet requeued in the journal in `dir`, oldest
    /// first, read without opening the journal (no lock taken, nothing
    /// written: safe beside the application that has it open).
    pub fn read_dead_letters(dir: impl AsRef<Path>) -> Result<Vec<DeadLetter>> {
        let mut letters = read(dir.as_ref())?;
        letters.retain(|l| l.requeued_as.is_none());
        Ok(letters)
    }

    /// Every dead letter not yet requeued, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut letters = self.all_dead_letters()?;
        letters.retain(|l| l.requeued_as.is_none());
        Ok(letters)
    }

    /// Every dead letter, requeued ones included.
    pub(super) fn all_dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let _file = lock(&self.shared.dead_file);
        read(&self.shared.dir)
    }

    /// Writes every dead letter not yet requeued to `out`, one JSON object
    /// per line (the file's own format); returns how many.
    pub fn export_dead_letters(&self, out: &mut dyn std::io::Write) -> Result<usize> {
        let letters = self.dead_letters()?;
        for letter in &letters {
            std::io::Write::write_fmt(out, format_args!("{}\n", letter.to_json()))
                .map_err(|e| segment::io_error(&self.shared.dir, None, e))?;
        }
        Ok(letters.len())
    }

    /// Appends the dead letters `pick` selects to the journal again, as
    /// they were (same operation, precondition and row: fix what refused
    /// them first, a constraint say), and marks them requeued. A letter
    /// whose key has a pending entry is left as it is (its precondition was
    /// never checked against that entry; requeue it once the key drains).
    /// Returns how many were requeued.
    pub async fn requeue_dead_letters(&self, pick: impl Fn(&DeadLetter) -> bool) -> Result<usize> {
        let chosen: Vec<DeadLetter> = self
            .dead_letters()?
            .into_iter()
            .filter(|l| pick(l))
            .collect();
        let mut requeued: Vec<(u64, u64)> = Vec::new();
        for letter in &chosen {
            let e = &letter.entry;
            let key = self.shared.index.key(&e.table, &e.key);
            let guard = self.shared.locks.lock(&key).await;
            if self.shared.index.contains(&key) {
                continue;
            }
            let update = IndexUpdate {
                key,
                put: e.op.record().is_some(),
            };
            let seq = self.send(entry::body_of(e), update, Some(guard)).await?;
            requeued.push((e.seq, seq));
        }
        if !requeued.is_empty() {
            let _file = lock(&self.shared.dead_file);
            let mut letters = read(&self.shared.dir)?;
            for letter in &mut letters {
                if let Some((_, seq)) = requeued.iter().find(|(old, _)| *old == letter.entry.seq) {
                    letter.requeued_as = Some(*seq);
                }
            }
            rewrite(&self.shared.dir, &letters)?;
        }
        Ok(requeued.len())
    }

    /// Dead letters as they happen (a receiver that lags loses the oldest;
    /// the file keeps them all).
    pub fn subscribe_dead_letters(&self) -> broadcast::Receiver<DeadLetter> {
        self.shared.dead_tx.subscribe()
    }
}
