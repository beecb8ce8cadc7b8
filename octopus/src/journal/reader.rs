//! Reading one segment file: the one primitive under both recovery (on
//! open) and the replay cursor.
//!
//! A [`SegmentReader`] starts at a byte offset and yields one [`Line`] per
//! journal line: where it starts, whether it is the last line of the file,
//! and the decoded entry or the typed reason it is not one. What a damaged
//! line *means* (a torn tail to cut off, or an error) is the caller's call.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::entry::{Entry, parse};
use super::error::EntryError;
use super::segment::io_error;
use crate::Error;

/// One line of a segment, decoded as a `T` (an [`Entry`], or less).
#[derive(Debug)]
pub(crate) struct Line<T = Entry> {
    /// The byte offset of the line's first byte in the segment.
    pub offset: u64,
    /// The entry, or why the line is not one ([`EntryError::CutShort`] if
    /// the file ends before its newline).
    pub entry: Result<T, EntryError>,
}

/// Reads a segment's lines in order from a byte offset.
#[derive(Debug)]
pub(crate) struct SegmentReader {
    /// The segment file.
    path: PathBuf,
    /// The open file, positioned at `offset`.
    file: BufReader<File>,
    /// Where the next line starts.
    offset: u64,
    /// The line being decoded, kept to reuse its allocation.
    buf: Vec<u8>,
}

impl SegmentReader {
    /// Opens the segment at `path`, to read from byte `offset` (which must be
    /// the start of a line).
    pub(crate) fn open(path: &Path, offset: u64) -> Result<Self, Error> {
        let mut file = File::open(path).map_err(|e| io_error(path, None, e))?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| io_error(path, Some(offset), e))?;
        }
        Ok(SegmentReader {
            path: path.to_path_buf(),
            file: BufReader::new(file),
            offset,
            buf: Vec::new(),
        })
    }

    /// The segment file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Where the next line starts: past every whole line read so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The next line, or `None` at the end of the file.
    ///
    /// A line the file ends inside (no newline yet) is yielded as
    /// [`EntryError::CutShort`] but not consumed: [`Self::offset`] stays at
    /// its start and the next call reads it again, complete if its writer
    /// has finished it since.
    pub(crate) fn next_line(&mut self) -> Result<Option<Line>, Error> {
        self.next_line_as(parse)
    }

    /// [`Self::next_line`], decoded by `decode` (recovery needs less than
    /// the whole entry).
    pub(crate) fn next_line_as<T>(
        &mut self, decode: fn(&[u8]) -> Result<T, EntryError>,
    ) -> Result<Option<Line<T>>, Error> {
        let offset = self.offset;
        self.buf.clear();
        let read = self
            .file
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| io_error(&self.path, Some(offset), e))?;
        if read == 0 {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') {
            self.file
                .seek(SeekFrom::Start(offset))
                .map_err(|e| io_error(&self.path, Some(offset), e))?;
            return Ok(Some(Line {
                offset,
                entry: Err(EntryError::CutShort),
            }));
        }
        self.offset += read as u64;
        Ok(Some(Line {
            offset,
            entry: decode(&self.buf[..read - 1]),
        }))
    }
}

/// The error for a line of `path` at `offset` that is not an entry.
pub(crate) fn corrupt(path: &Path, offset: u64, why: &EntryError) -> Error {
    Error::journal(path, Some(offset), format!("corrupt entry: {why}"))
}

/// The error for an entry at `offset` whose sequence number is `seq` where
/// `expected` should be: entries follow each other without gaps.
pub(crate) fn out_of_sequence(path: &Path, offset: u64, seq: u64, expected: u64) -> Error {
    Error::journal(
        path,
        Some(offset),
        format!("sequence number {seq} where {expected} was expected"),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::super::entry::line;
    use super::*;

    const BODY: &str =
        r#""time":1,"table":"t","op":"delete","key":"k","fingerprint":"00000000000000ff""#;

    /// A segment holding entries 1 to `n`, and the offset of each line.
    fn segment(dir: &Path, n: u64) -> (PathBuf, Vec<u64>) {
        let path = dir.join("journal-00000000000000000001.jsonl");
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for seq in 1..=n {
            offsets.push(bytes.len() as u64);
            bytes.extend_from_slice(&line(seq, BODY));
        }
        std::fs::write(&path, bytes).unwrap();
        (path, offsets)
    }

    /// Every line up to the end of the file (a cut-short line, which is
    /// not consumed, included once): offset, seq or error.
    fn all(r: &mut SegmentReader) -> Vec<(u64, Result<u64, String>)> {
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            let torn = matches!(l.entry, Err(EntryError::CutShort));
            let seq = l.entry.map(|e| e.seq).map_err(|e| e.to_string());
            out.push((l.offset, seq));
            if torn {
                break;
            }
        }
        out
    }

    #[test]
    fn lines_come_with_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let (path, at) = segment(dir.path(), 3);
        let mut r = SegmentReader::open(&path, 0).unwrap();
        assert_eq!(
            all(&mut r),
            [(at[0], Ok(1)), (at[1], Ok(2)), (at[2], Ok(3))]
        );
        assert_eq!(r.offset(), std::fs::metadata(&path).unwrap().len());
        let mut r = SegmentReader::open(&path, at[1]).unwrap();
        assert_eq!(all(&mut r), [(at[1], Ok(2)), (at[2], Ok(3))]);
    }

    #[test]
    fn a_torn_tail_is_read_again_once_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (path, at) = segment(dir.path(), 1);
        let end = std::fs::metadata(&path).unwrap().len();
        let next = line(2, BODY);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&next[..20]).unwrap();
        let mut r = SegmentReader::open(&path, 0).unwrap();
        let torn = (end, Err(EntryError::CutShort.to_string()));
        assert_eq!(all(&mut r), [(at[0], Ok(1)), torn.clone()]);
        assert_eq!(r.offset(), end, "the cut-short line is not consumed");
        assert_eq!(all(&mut r), [torn]);
        f.write_all(&next[20..]).unwrap();
        assert_eq!(all(&mut r), [(end, Ok(2))]);
    }

    #[test]
    fn damage_mid_file_is_not_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (path, at) = segment(dir.path(), 3);
        let mut bytes = std::fs::read(&path).unwrap();
        let i = usize::try_from(at[1]).unwrap() + 40;
        bytes[i] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let mut r = SegmentReader::open(&path, 0).unwrap();
        let lines = all(&mut r);
        assert_eq!(lines.len(), 3);
        let (offset, entry) = &lines[1];
        assert_eq!(*offset, at[1]);
        assert!(entry.as_ref().unwrap_err().contains("checksum mismatch"));
        assert_eq!(lines[2], (at[2], Ok(3)), "reading goes on");
        let e = corrupt(&path, at[1], &EntryError::TooShort);
        assert!(e.to_string().contains(&format!("at byte offset {}", at[1])));
    }
}
