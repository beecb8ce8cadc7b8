//! Segment files: names, recovery on open, and reading entries in order.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::entry::{self, Entry};
use super::error::EntryError;
use crate::Error;

const PREFIX: &str = "journal-";
const SUFFIX: &str = ".jsonl";

/// The file of the segment whose first entry is `first_seq`.
pub fn path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{first_seq:020}{SUFFIX}"))
}

/// Segments in the directory, by first sequence number.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, None, e))?;
    for item in entries {
        let item = item.map_err(|e| io_error(dir, None, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(num) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
            && let Ok(first) = num.parse::<u64>()
        {
            out.push((first, item.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub fn io_error(path: &Path, offset: Option<u64>, e: std::io::Error) -> Error {
    Error::Journal {
        path: path.display().to_string(),
        offset,
        reason: e.to_string(),
    }
}

fn corrupt(path: &Path, offset: u64, reason: String) -> Error {
    Error::Journal {
        path: path.display().to_string(),
        offset: Some(offset),
        reason,
    }
}

/// What recovery found.
pub struct Recovered {
    /// Entries after the checkpoint, in order.
    pub pending: Vec<Entry>,
    /// The highest sequence number in the journal (the checkpoint if no
    /// entry is left).
    pub last_seq: u64,
    /// Bytes cut off a torn final entry, if there was one.
    pub truncated: Option<(PathBuf, u64)>,
}

/// Reads every segment, checking each entry; a torn final entry (the last
/// line of the last segment, cut short or damaged by a crash mid-append) is
/// truncated away, while damage anywhere else is an error naming the segment
/// and byte offset.
pub fn recover(segments: &[(u64, PathBuf)], checkpoint: u64) -> Result<Recovered, Error> {
    let mut pending = Vec::new();
    let mut last_seq: Option<u64> = None;
    let mut truncated = None;
    for (n, (first, path)) in segments.iter().enumerate() {
        let is_last_segment = n + 1 == segments.len();
        let file = File::open(path).map_err(|e| io_error(path, None, e))?;
        let size = file.metadata().map_err(|e| io_error(path, None, e))?.len();
        let mut reader = BufReader::new(file);
        let mut offset = 0u64;
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| io_error(path, Some(offset), e))?;
            if read == 0 {
                break;
            }
            let at_end = offset + read as u64 == size;
            let complete = line.last() == Some(&b'\n');
            let text = if complete {
                &line[..line.len() - 1]
            } else {
                &line[..]
            };
            let parsed = if complete {
                entry::parse(text)
            } else {
                Err(EntryError::CutShort)
            };
            match parsed {
                Ok(e) => {
                    let expected = last_seq.map_or(*first, |s| s + 1);
                    if e.seq != expected {
                        return Err(corrupt(
                            path,
                            offset,
                            format!("sequence number {} where {expected} was expected", e.seq),
                        ));
                    }
                    last_seq = Some(e.seq);
                    if e.seq > checkpoint {
                        pending.push(e);
                    }
                }
                Err(reason) if is_last_segment && at_end => {
                    // A crash while appending: the entry was never
                    // acknowledged. Cut it off.
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| io_error(path, Some(offset), e))?;
                    f.set_len(offset)
                        .map_err(|e| io_error(path, Some(offset), e))?;
                    f.sync_all().map_err(|e| io_error(path, Some(offset), e))?;
                    tracing::warn!(target: "octopus::journal", segment = %path.display(), offset, %reason, "truncated a torn final entry");
                    truncated = Some((path.clone(), offset));
                    break;
                }
                Err(reason) => {
                    return Err(corrupt(path, offset, format!("corrupt entry: {reason}")));
                }
            }
            offset += read as u64;
        }
    }
    Ok(Recovered {
        pending,
        last_seq: last_seq.unwrap_or(checkpoint).max(checkpoint),
        truncated,
    })
}

/// Reads entries in order from a position, across segments.
pub struct Cursor {
    /// The next sequence number wanted.
    pub next_seq: u64,
    /// The segment being read, its path, and the offset of the next line.
    file: Option<(BufReader<File>, PathBuf, u64)>,
}

impl Cursor {
    pub fn new(next_seq: u64) -> Self {
        Cursor {
            next_seq,
            file: None,
        }
    }

    /// Up to `limit` entries with sequence numbers from `next_seq` to
    /// `up_to`, advancing the cursor.
    pub fn read(&mut self, dir: &Path, up_to: u64, limit: usize) -> Result<Vec<Entry>, Error> {
        let mut out = Vec::new();
        while out.len() < limit && self.next_seq <= up_to {
            if self.file.is_none() {
                let segments = list(dir)?;
                // The segment holding next_seq: the last one starting at or
                // before it.
                let Some((_, path)) = segments
                    .iter()
                    .rev()
                    .find(|(f, _)| *f <= self.next_seq)
                    .cloned()
                else {
                    return Err(Error::Journal {
                        path: dir.display().to_string(),
                        offset: None,
                        reason: format!("no segment holds entry {}", self.next_seq),
                    });
                };
                let file = File::open(&path).map_err(|e| io_error(&path, None, e))?;
                self.file = Some((BufReader::new(file), path, 0));
            }
            let Some((reader, path, offset)) = self.file.as_mut() else {
                break;
            };
            let mut line = Vec::new();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| io_error(path, Some(*offset), e))?;
            if read == 0 || line.last() != Some(&b'\n') {
                // The end of this segment: either more entries follow in the
                // next one, or the writer has not written them yet.
                let path = path.clone();
                let at = *offset;
                self.file = None;
                let segments = list(dir)?;
                let has_next = segments.iter().any(|(f, _)| *f == self.next_seq);
                if !has_next {
                    // Re-read this segment from where we stopped next time.
                    let mut file = File::open(&path).map_err(|e| io_error(&path, None, e))?;
                    file.seek(SeekFrom::Start(at))
                        .map_err(|e| io_error(&path, Some(at), e))?;
                    self.file = Some((BufReader::new(file), path, at));
                    break;
                }
                continue;
            }
            let at = *offset;
            let e = entry::parse(&line[..line.len() - 1])
                .map_err(|r| corrupt(path, at, format!("corrupt entry: {r}")))?;
            *offset += read as u64;
            if e.seq < self.next_seq {
                continue;
            }
            if e.seq != self.next_seq {
                return Err(corrupt(
                    path,
                    at,
                    format!(
                        "sequence number {} where {} was expected",
                        e.seq, self.next_seq
                    ),
                ));
            }
            self.next_seq += 1;
            out.push(e);
        }
        Ok(out)
    }
}
