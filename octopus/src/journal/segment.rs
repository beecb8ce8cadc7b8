//! Segment files: names, listing, and reading entries in order for replay
//! (recovery on open is in `recovery`; both read through `reader`).

use std::fs;
use std::path::{Path, PathBuf};

use super::checkpoint::Resume;
use super::entry::Entry;
use super::error::EntryError;
use super::reader::{SegmentReader, corrupt, out_of_sequence};
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

/// An I/O failure on a journal file, as a journal error.
pub fn io_error(path: &Path, offset: Option<u64>, e: std::io::Error) -> Error {
    Error::journal_io(path, offset, e)
}

/// Reads entries in order from a position, across segments: what replay
/// applies. Never returns an entry twice; at the end of what the writer has
/// written, it picks up from there on the next read.
pub struct Cursor {
    /// The next sequence number wanted (or the first of the numbers failed
    /// appends took, which the next entry then declares).
    pub next_seq: u64,
    /// The segment being read (its first sequence number, and a reader at
    /// the next line).
    file: Option<(u64, SegmentReader)>,
    /// The writer's count of failed writes when `file` was last read: when
    /// it changes, what `file` buffered may be bytes since cut off.
    failures: u64,
    /// A place before `next_seq` to start reading its segment at, instead
    /// of the segment's start.
    from: Option<Resume>,
    /// Where the last entry read ends.
    last_end: Option<Resume>,
}

impl Cursor {
    /// A cursor whose first entry will be `next_seq`.
    pub fn new(next_seq: u64) -> Self {
        Cursor {
            next_seq,
            file: None,
            failures: 0,
            from: None,
            last_end: None,
        }
    }

    /// A cursor whose first entry will be `next_seq`, reading the segment
    /// `from` names from its place (an entry before `next_seq` ends there)
    /// rather than from the segment's start.
    pub fn resuming(next_seq: u64, from: Option<Resume>) -> Self {
        Cursor {
            from: from.filter(|r| r.seq < next_seq),
            ..Cursor::new(next_seq)
        }
    }

    /// Where the last entry read ends (the place a checkpoint that covers
    /// it may record).
    pub fn last_end(&self) -> Option<Resume> {
        self.last_end
    }

    /// Up to `limit` entries with sequence numbers from `next_seq` to
    /// `up_to` (the durable end), advancing the cursor. `failures` is the
    /// writer's count of failed writes, read after `up_to`: if it changed,
    /// the segment is read again from its start, so no byte of a failed
    /// batch (cut off, then written over by the next batch) is taken from a
    /// buffer. An entry may follow a gap it declares (numbers taken by
    /// appends that failed, see [`Entry::prev`]); any other gap is an error.
    pub fn read(
        &mut self, dir: &Path, up_to: u64, failures: u64, limit: usize,
    ) -> Result<Vec<Entry>, Error> {
        if failures != self.failures {
            self.file = None;
            self.failures = failures;
        }
        let mut out = Vec::new();
        while out.len() < limit && self.next_seq <= up_to {
            let (_, reader) = match &mut self.file {
                Some(file) => file,
                None => self.file.insert(self.open(dir)?),
            };
            let line = match reader.next_line()? {
                Some(line) if !matches!(line.entry, Err(EntryError::CutShort)) => line,
                // The end of this segment: either more entries follow in the
                // next one, or the writer has not written them yet.
                _ if self.segment_done(dir)? => continue,
                _ => break,
            };
            let e = line
                .entry
                .map_err(|why| corrupt(reader.path(), line.offset, &why))?;
            if e.seq < self.next_seq {
                continue;
            }
            let declared_gap = e.seq > self.next_seq
                && e.prev.and_then(|p| p.checked_add(1)) == Some(self.next_seq);
            if e.seq != self.next_seq && !declared_gap {
                return Err(out_of_sequence(
                    reader.path(),
                    line.offset,
                    e.seq,
                    self.next_seq,
                ));
            }
            self.next_seq = e.seq + 1;
            if let Some((segment, reader)) = &self.file {
                self.last_end = Some(Resume {
                    seq: e.seq,
                    segment: *segment,
                    offset: reader.offset(),
                });
            }
            out.push(e);
        }
        Ok(out)
    }

    /// The segment holding `next_seq`, from its start: the last one starting
    /// at or before it (or the first, if `next_seq` was taken by failed
    /// appends before it).
    fn open(&self, dir: &Path) -> Result<(u64, SegmentReader), Error> {
        let segments = list(dir)?;
        let Some((first, path)) = segments
            .iter()
            .rev()
            .find(|(f, _)| *f <= self.next_seq)
            .or(segments.first())
        else {
            return Err(Error::journal(
                dir,
                None,
                format!("no segment holds entry {}", self.next_seq),
            ));
        };
        let offset = match self.from {
            Some(r) if r.segment == *first => r.offset,
            _ => 0,
        };
        Ok((*first, SegmentReader::open(path, offset)?))
    }

    /// At the end of the current segment: whether a later segment exists
    /// (the writer only starts one once it is done with this one): then it
    /// is read next. If not, the writer has not written further yet: this
    /// segment is reopened where reading stopped, for the next read.
    fn segment_done(&mut self, dir: &Path) -> Result<bool, Error> {
        let Some((first, reader)) = self.file.take() else {
            return Ok(true);
        };
        let segments = list(dir)?;
        if let Some((next, path)) = segments.iter().find(|(f, _)| *f > first) {
            self.file = Some((*next, SegmentReader::open(path, 0)?));
            return Ok(true);
        }
        self.file = Some((first, SegmentReader::open(reader.path(), reader.offset())?));
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::super::entry::{line, line_in_batch};
    use super::*;

    const BODY: &str =
        r#""time":1,"table":"t","op":"delete","key":"k","fingerprint":"00000000000000ff""#;

    fn seqs(entries: Vec<Entry>) -> Vec<u64> {
        entries.into_iter().map(|e| e.seq).collect()
    }

    #[test]
    fn the_cursor_follows_the_writer_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (1..=2).flat_map(|s| line(s, BODY)).collect();
        std::fs::write(path(dir.path(), 1), bytes).unwrap();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(path(dir.path(), 1))
            .unwrap();
        let third = line(3, BODY);
        f.write_all(&third[..25]).unwrap();

        let mut c = Cursor::new(2);
        assert_eq!(seqs(c.read(dir.path(), 10, 0, 10).unwrap()), [2]);
        assert_eq!(seqs(c.read(dir.path(), 10, 0, 10).unwrap()), [0u64; 0]);
        f.write_all(&third[25..]).unwrap();
        assert_eq!(seqs(c.read(dir.path(), 10, 0, 10).unwrap()), [3]);
        let next: Vec<u8> = (4..=6).flat_map(|s| line(s, BODY)).collect();
        std::fs::write(path(dir.path(), 4), next).unwrap();
        assert_eq!(seqs(c.read(dir.path(), 5, 0, 1).unwrap()), [4]);
        assert_eq!(seqs(c.read(dir.path(), 5, 0, 10).unwrap()), [5]);
        assert_eq!(seqs(c.read(dir.path(), 10, 0, 10).unwrap()), [6]);
        assert_eq!(c.next_seq, 7);
    }

    #[test]
    fn after_a_failed_write_the_cursor_reads_the_disk_not_its_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let durable: Vec<u8> = (1..=2).flat_map(|s| line(s, BODY)).collect();
        let failed = line(3, &BODY.replace("\"k\"", "\"failed\""));
        std::fs::write(path(dir.path(), 1), [durable.clone(), failed].concat()).unwrap();
        let mut c = Cursor::new(1);
        // Reads up to the durable end; the failed line is in its buffer.
        assert_eq!(seqs(c.read(dir.path(), 2, 0, 10).unwrap()), [1, 2]);
        // The writer cuts the failed line off and writes entry 4, which
        // names 2 as the entry before it (3 went to the failed append).
        let next = line_in_batch(4, 4, Some(2), &BODY.replace("\"k\"", "\"written\""));
        std::fs::write(path(dir.path(), 1), [durable, next].concat()).unwrap();
        let read = c.read(dir.path(), 4, 1, 10).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(
            (read[0].seq, &read[0].key),
            (4, &crate::value::Key::Text("written".into()))
        );
    }

    #[test]
    fn the_cursor_follows_a_declared_gap_into_a_later_segment() {
        // 3 and 4 failed, the second in a new segment named 4, which the
        // writer then used for entry 5.
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<u8> = (1..=2)
            .flat_map(|s| line_in_batch(s, s, None, BODY))
            .collect();
        std::fs::write(path(dir.path(), 1), first).unwrap();
        let mut c = Cursor::new(1);
        assert_eq!(seqs(c.read(dir.path(), 2, 0, 10).unwrap()), [1, 2]);
        std::fs::write(path(dir.path(), 4), line_in_batch(5, 5, Some(2), BODY)).unwrap();
        assert_eq!(seqs(c.read(dir.path(), 5, 2, 10).unwrap()), [5]);
        // From a restart at 3 too; a gap not declared is still refused.
        assert_eq!(
            seqs(Cursor::new(3).read(dir.path(), 5, 0, 10).unwrap()),
            [5]
        );
        std::fs::write(path(dir.path(), 4), line_in_batch(5, 5, Some(1), BODY)).unwrap();
        let err = Cursor::new(3).read(dir.path(), 5, 0, 10).unwrap_err();
        assert!(
            err.to_string()
                .contains("sequence number 5 where 3 was expected"),
            "{err}"
        );
    }

    #[test]
    fn the_cursor_refuses_damage_and_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes: Vec<u8> = [1, 2, 4].iter().flat_map(|s| line(*s, BODY)).collect();
        let gap_at = 2 * line(1, BODY).len();
        std::fs::write(path(dir.path(), 1), &bytes).unwrap();
        let err = Cursor::new(1).read(dir.path(), 10, 0, 10).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("at byte offset {gap_at}")), "{text}");
        assert!(text.contains("sequence number 4 where 3 was expected"));
        bytes[gap_at + 9] ^= 1;
        std::fs::write(path(dir.path(), 1), &bytes).unwrap();
        let text = Cursor::new(3)
            .read(dir.path(), 10, 0, 10)
            .unwrap_err()
            .to_string();
        assert!(text.contains("corrupt entry: checksum mismatch"), "{text}");
        let text = Cursor::new(1).read(tempfile::tempdir().unwrap().path(), 1, 0, 1);
        assert!(
            text.unwrap_err()
                .to_string()
                .contains("no segment holds entry 1")
        );
    }
}
