//! Recovery on open: every segment read and checked; damage at the end of
//! the last segment (what a crash or a power loss during an append leaves)
//! cut off, its bytes kept in a quarantine file.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use super::checkpoint::{Checkpoint, MAX_SEQ, Resume};
use super::decode::{Head, parse_head};
use super::error::EntryError;
use super::index::Position;
use super::reader::{SegmentReader, corrupt, out_of_sequence};
use super::segment::io_error;
use crate::Error;

/// What recovery found.
#[derive(Debug)]
pub struct Recovered {
    /// How many entries the checkpoint does not cover.
    pub pending: u64,
    /// Whether any line carries a group commit mark: the journal was
    /// written by a version that creates the checkpoint with the journal.
    pub marked: bool,
    /// The first and the last sequence number the segments hold, if any.
    pub first: Option<u64>,
    /// See `first`.
    pub last: Option<u64>,
    /// Where the last segment was cut, if it was.
    pub truncated: Option<Cut>,
    /// Whether reading started at the checkpoint's place
    /// ([`Checkpoint::resume`]), past the entries it covers.
    pub resumed: bool,
}

/// Damage cut off the end of the last segment.
#[derive(Debug, Clone)]
pub struct Cut {
    /// The segment.
    pub segment: PathBuf,
    /// Where the damage started: the segment's new length.
    pub offset: u64,
    /// The file holding the bytes cut off.
    pub quarantine: PathBuf,
}

/// Reads every segment, checking each entry and that sequence numbers
/// follow each other (a segment may start past a gap the checkpoint
/// covers: entries replayed, then lost to a power loss under a weaker
/// durability). Damage at the end of the last segment is cut off when
/// nothing after it shows acknowledged entries (see [`cut_tail`]); damage
/// anywhere else is an error naming the segment and byte offset. `synced`:
/// every group commit was synced before the next was written
/// ([`Durability::Fsync`](super::Durability::Fsync)).
pub fn recover(
    dir: &Path, segments: &[(u64, PathBuf)], checkpoint: &Checkpoint, synced: bool,
    on_pending: &mut dyn FnMut(&Head, Position),
) -> Result<Recovered, Error> {
    let (mut pending, mut marked) = (0u64, false);
    let (mut first_seq, mut last_seq): (Option<u64>, Option<u64>) = (None, None);
    let mut truncated = None;
    let resume = resume_at(segments, checkpoint)?;
    if let Some((_, r)) = resume {
        // Entries up to `r.seq` are done and are not read again (the first
        // segment, or a gap before it, starts no later than they do).
        first_seq = Some(segments[0].0.min(r.seq));
        last_seq = Some(r.seq);
    }
    let skip = resume.map_or(0, |(n, _)| n);
    for (n, (first, path)) in segments.iter().enumerate().skip(skip) {
        let is_last_segment = n + 1 == segments.len();
        let from = resume
            .filter(|(at, _)| *at == n)
            .map_or(0, |(_, r)| r.offset);
        let mut reader = SegmentReader::open(path, from)?;
        let mut at_start = from == 0;
        while let Some(line) = reader.next_line_as(parse_head)? {
            match line.entry {
                Ok(e) => {
                    let expected = last_seq.map_or(*first, |s| s.saturating_add(1));
                    let past_replayed_gap = at_start
                        && e.seq == *first
                        && e.seq > expected
                        && e.seq - 1 <= checkpoint.highest();
                    if e.seq > MAX_SEQ
                        || (e.seq != expected
                            && !past_replayed_gap
                            && !declared_gap(&e, expected, last_seq.is_none()))
                    {
                        return Err(out_of_sequence(path, line.offset, e.seq, expected));
                    }
                    at_start = false;
                    marked |= e.batch.is_some();
                    // A journal whose first entry follows failed appends
                    // accounts for their numbers too.
                    first_seq.get_or_insert(match e.prev {
                        Some(prev) if e.seq > expected => prev + 1,
                        _ => e.seq,
                    });
                    last_seq = Some(e.seq);
                    if !checkpoint.done_at(e.seq, &e.table) {
                        pending += 1;
                        on_pending(&e, Position::new(e.seq, e.put, *first, line.offset));
                    }
                }
                Err(why) if is_last_segment => {
                    // The entry the damage follows (at a segment's start, the
                    // one before the segment's first).
                    let before = first.saturating_sub(1);
                    let damage = Damage {
                        offset: line.offset,
                        after: last_seq.map_or(before, |s| s.max(before)),
                        why,
                        synced,
                    };
                    truncated = Some(cut_tail(dir, &mut reader, &damage)?);
                    break;
                }
                Err(why) => return Err(corrupt(path, line.offset, &why)),
            }
        }
    }
    Ok(Recovered {
        pending,
        marked,
        first: first_seq,
        last: last_seq,
        truncated,
        resumed: resume.is_some(),
    })
}

/// The checkpoint's place ([`Checkpoint::resume`]) as the index of its
/// segment, if the segments still agree with it: its segment is there, a
/// line ends just before it, and what starts there is the end of the file
/// or an intact entry that follows the place's entry (or declares the gap
/// after it). Anything else (a power loss took the place's bytes, say):
/// `None`, and recovery reads every segment from its start.
fn resume_at(
    segments: &[(u64, PathBuf)], checkpoint: &Checkpoint,
) -> Result<Option<(usize, Resume)>, Error> {
    let Some(r) = checkpoint
        .resume
        .filter(|r| r.seq <= checkpoint.seq && r.offset > 0)
    else {
        return Ok(None);
    };
    let Some(n) = segments.iter().position(|(first, _)| *first == r.segment) else {
        return Ok(None);
    };
    let path = &segments[n].1;
    let mut before = [0u8; 1];
    let ends_a_line = File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(r.offset - 1))?;
            f.read(&mut before)
        })
        .map_err(|e| io_error(path, Some(r.offset - 1), e))?
        == 1
        && before[0] == b'\n';
    if !ends_a_line {
        return Ok(None);
    }
    let follows = match SegmentReader::open(path, r.offset)?.next_line_as(parse_head)? {
        None => true,
        Some(line) => match line.entry {
            Ok(e) => {
                e.seq == r.seq + 1 || (e.seq > r.seq + 1 && declared_gap(&e, r.seq + 1, false))
            }
            Err(_) => false,
        },
    };
    Ok(follows.then_some((n, r)))
}

/// Whether `e`, found where entry `expected` was, starts the group commit
/// after appends that failed, which took the numbers from `expected` to
/// just before it (see [`Entry::prev`](super::entry::Entry::prev)).
/// `at_segment_name`: no entry precedes, and `expected` is the name of the
/// journal's first segment. The writer may have started that segment for
/// any append of the gap, not only its first, so the gap may begin before
/// the name (the checkpoint must then cover the entry before it, which
/// [`verify`](super::verify) checks against [`Recovered::first`]).
fn declared_gap(e: &Head, expected: u64, at_segment_name: bool) -> bool {
    let Some(gap_start) = e.prev.and_then(|p| p.checked_add(1)) else {
        return false;
    };
    let declared = if at_segment_name {
        gap_start <= expected
    } else {
        gap_start == expected
    };
    e.batch == Some(e.seq) && e.seq > expected && declared
}

/// A damaged line of the last segment.
struct Damage {
    /// Where it starts.
    offset: u64,
    /// The last intact entry before it.
    after: u64,
    why: EntryError,
    /// Whether group commits were synced one by one.
    synced: bool,
}

/// The damage and everything after it, if nothing there shows acknowledged
/// entries: then they are an append a crash or a power loss interrupted (a
/// torn line; a hole where a group commit's pages never reached the disk,
/// then some that did), copied to a quarantine file beside the journal,
/// durably, then cut off the segment. Acknowledged entries follow the
/// damage, an error naming its offset, when an intact line after it
///
/// - belongs to a later group commit than the damaged line (its mark is
///   past `after + 1`, the damaged line's place): under `synced`, a group
///   commit is synced before the next is written, so the damaged one was
///   acknowledged;
/// - or, for lines without a mark (written before it existed), stands at
///   the place the damaged line's successors have (`after + k` on the k-th
///   line from the damaged one).
fn cut_tail(dir: &Path, reader: &mut SegmentReader, damage: &Damage) -> Result<Cut, Error> {
    let path = reader.path().to_path_buf();
    let offset = damage.offset;
    let mut place = damage.after.saturating_add(1);
    // A line cut short is the file's last, and is not consumed.
    let torn = matches!(damage.why, EntryError::CutShort);
    while let Some(line) = if torn {
        None
    } else {
        reader.next_line_as(parse_head)?
    } {
        place = place.saturating_add(1);
        let acknowledged = match &line.entry {
            Ok(h) => match h.batch {
                // The damaged line starts a group commit after failed
                // appends: this line belongs to it.
                Some(_) if h.prev == Some(damage.after) => false,
                Some(batch) => damage.synced && batch > damage.after.saturating_add(1),
                None => h.seq == place,
            },
            Err(EntryError::CutShort) => break,
            Err(_) => false,
        };
        if acknowledged {
            let seq = line.entry.as_ref().map_or(0, |h| h.seq);
            return Err(Error::journal(
                path,
                Some(offset),
                format!(
                    "corrupt entry: {}; entry {seq} follows it intact at byte offset {}, \
                     so acknowledged entries come after the damage",
                    damage.why, line.offset
                ),
            ));
        }
    }
    let io = |e| io_error(&path, Some(offset), e);
    let mut segment = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let mut tail = Vec::new();
    segment.seek(SeekFrom::Start(offset)).map_err(io)?;
    segment.read_to_end(&mut tail).map_err(io)?;
    let quarantine = quarantine(dir, &path, offset, &tail)?;
    segment.set_len(offset).map_err(io)?;
    segment.sync_all().map_err(io)?;
    let bytes = tail.len() as u64;
    let why = &damage.why;
    tracing::warn!(target: "octopus::journal", segment = %path.display(), offset, bytes, quarantine = %quarantine.display(), reason = %why, "cut damage off the end of the journal: an append a crash interrupted, never acknowledged; the bytes are kept in the quarantine file");
    Ok(Cut {
        segment: path,
        offset,
        quarantine,
    })
}

/// Writes `bytes` cut from `segment` at `offset` to a new file beside the
/// journal, durably (its name too).
fn quarantine(dir: &Path, segment: &Path, offset: u64, bytes: &[u8]) -> Result<PathBuf, Error> {
    let stem = segment
        .file_stem()
        .map_or_else(|| "segment".into(), |s| s.to_string_lossy().into_owned());
    let mut n = 0u32;
    let (path, mut file) = loop {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let path = dir.join(format!("quarantine-{stem}-at-{offset}{suffix}.bin"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => break (path, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(io_error(&path, None, e)),
        }
    };
    let io = |e| io_error(&path, None, e);
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(path)
}

#[cfg(test)]
mod tests;
