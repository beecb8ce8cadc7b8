//! Recovery on open: every segment read and checked; damage at the end of
//! the last segment (what a crash or a power loss during an append leaves)
//! cut off, its bytes kept in a quarantine file.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use super::checkpoint::{Checkpoint, MAX_SEQ};
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
    for (n, (first, path)) in segments.iter().enumerate() {
        let is_last_segment = n + 1 == segments.len();
        let mut reader = SegmentReader::open(path, 0)?;
        let mut at_start = true;
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
    })
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
mod tests {
    use std::fs;

    use super::super::entry::{line, line_in_batch};
    use super::super::segment;
    use super::*;

    const BODY: &str =
        r#""time":1,"table":"t","op":"delete","key":"k","fingerprint":"00000000000000ff""#;

    /// Writes segments, each a list of sequence numbers, and returns them
    /// as `segment::list` would.
    fn write(dir: &Path, segments: &[&[u64]]) -> Vec<(u64, PathBuf)> {
        for seqs in segments {
            let bytes: Vec<u8> = seqs.iter().flat_map(|s| line(*s, BODY)).collect();
            fs::write(segment::path(dir, seqs[0]), bytes).unwrap();
        }
        segment::list(dir).unwrap()
    }

    /// Appends `bytes` to a segment file.
    fn append(path: &Path, bytes: &[u8]) -> u64 {
        let mut all = fs::read(path).unwrap();
        let at = all.len() as u64;
        all.extend_from_slice(bytes);
        fs::write(path, all).unwrap();
        at
    }

    /// Recovers with a checkpoint at `seq`; the pending sequence numbers.
    fn recover(
        dir: &Path, segments: &[(u64, PathBuf)], seq: u64,
    ) -> Result<(Vec<u64>, Recovered), Error> {
        let checkpoint = Checkpoint {
            seq,
            ..Checkpoint::default()
        };
        let mut pending = Vec::new();
        let r = super::recover(dir, segments, &checkpoint, true, &mut |e, _| {
            pending.push(e.seq)
        })?;
        Ok((pending, r))
    }

    fn seqs(r: &(Vec<u64>, Recovered)) -> Vec<u64> {
        r.0.clone()
    }

    #[test]
    fn a_torn_tail_of_the_last_segment_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2], &[3, 4]]);
        let last = &segs[1].1;
        let at = append(last, &line(5, BODY)[..30]);
        let r = recover(dir.path(), &segs, 1).unwrap();
        assert_eq!((seqs(&r), r.1.last), (vec![2, 3, 4], Some(4)));
        let cut = r.1.truncated.unwrap();
        assert_eq!((&cut.segment, cut.offset), (last, at));
        assert_eq!(fs::read(&cut.quarantine).unwrap(), &line(5, BODY)[..30]);
        assert_eq!(fs::metadata(last).unwrap().len(), at);
        // A whole but damaged final line is torn too.
        append(last, b"\0\0\0\n");
        let cut = recover(dir.path(), &segs, 0).unwrap().1.truncated.unwrap();
        assert_eq!((&cut.segment, cut.offset), (last, at));
        assert_eq!(fs::read(&cut.quarantine).unwrap(), b"\0\0\0\n");
        let r = recover(dir.path(), &segs, 0).unwrap();
        assert_eq!(
            (seqs(&r), r.1.truncated.is_none()),
            (vec![1, 2, 3, 4], true)
        );
    }

    #[test]
    fn damage_elsewhere_is_an_error_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2], &[3, 4]]);
        // The same torn line, but at the end of a segment that is not last.
        let first = &segs[0].1;
        let at = append(first, &line(3, BODY)[..30]);
        let err = recover(dir.path(), &segs, 0).unwrap_err().to_string();
        assert!(err.contains(&format!("at byte offset {at}")), "{err}");
        assert!(err.contains("corrupt entry: entry cut short"), "{err}");
        assert_eq!(fs::metadata(first).unwrap().len(), at + 30, "nothing cut");
        // A damaged line in the middle of the last segment, an intact
        // entry after it where it belongs: acknowledged entries follow.
        let segs = write(dir.path(), &[&[1, 2], &[3, 4, 5]]);
        let mut bytes = fs::read(&segs[1].1).unwrap();
        let second = line(3, BODY).len();
        bytes[second + 12] ^= 1;
        fs::write(&segs[1].1, &bytes).unwrap();
        let err = recover(dir.path(), &segs, 0).unwrap_err().to_string();
        assert!(err.contains(&format!("at byte offset {second}")), "{err}");
        assert!(err.contains("corrupt entry: checksum mismatch"), "{err}");
        assert!(err.contains("entry 5 follows it intact"), "{err}");
        assert_eq!(fs::read(&segs[1].1).unwrap(), bytes, "nothing cut");
    }

    #[test]
    fn a_hole_then_later_lines_of_the_same_append_is_cut_and_kept() {
        // A power loss during a group commit of 3..=6: the page holding 3
        // and 4 never reached the disk (zeros), the one holding 5 and 6 did.
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2]]);
        let at = fs::metadata(&segs[0].1).unwrap().len();
        let hole = vec![0u8; line(3, BODY).len() * 2];
        let later: Vec<u8> = [5, 6].iter().flat_map(|s| line(*s, BODY)).collect();
        let tail = [hole, later].concat();
        append(&segs[0].1, &tail);
        let r = recover(dir.path(), &segs, 0).unwrap();
        assert_eq!((seqs(&r), r.1.last), (vec![1, 2], Some(2)));
        let cut = r.1.truncated.unwrap();
        assert_eq!(cut.offset, at);
        assert_eq!(fs::read(&cut.quarantine).unwrap(), tail);
        assert_eq!(fs::metadata(&segs[0].1).unwrap().len(), at);
    }

    /// Lines `seqs` as group commits `groups` wrote them (each group the
    /// list of its sequence numbers).
    fn batches(groups: &[&[u64]]) -> Vec<u8> {
        groups
            .iter()
            .flat_map(|g| {
                g.iter()
                    .flat_map(move |s| line_in_batch(*s, g[0], None, BODY))
            })
            .collect()
    }

    #[test]
    fn damage_inside_the_last_group_commit_is_cut() {
        // Group commit 3..=6 torn by a power loss: 3 and 4 lost (a hole
        // that swallows their newlines), 5 and 6 on disk.
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2]]);
        let at = fs::metadata(&segs[0].1).unwrap().len();
        let group = batches(&[&[3, 4, 5, 6]]);
        let two = line_in_batch(3, 3, None, BODY).len() + line_in_batch(4, 3, None, BODY).len();
        let mut tail = vec![0u8; two];
        tail.extend_from_slice(&group[two..]);
        append(&segs[0].1, &tail);
        let r = recover(dir.path(), &segs, 0).unwrap();
        assert_eq!(seqs(&r), vec![1, 2]);
        assert_eq!(r.1.truncated.unwrap().offset, at);
    }

    #[test]
    fn damage_followed_by_a_later_group_commit_is_an_error() {
        // A block of zeros over 2 and 3 (synced long ago); 4 and 5 were
        // written by later group commits.
        let dir = tempfile::tempdir().unwrap();
        let bytes = batches(&[&[1], &[2], &[3], &[4], &[5]]);
        let path = segment::path(dir.path(), 1);
        let one = line_in_batch(1, 1, None, BODY).len();
        let mut damaged = bytes.clone();
        damaged[one..3 * one].fill(0);
        fs::write(&path, &damaged).unwrap();
        let segs = segment::list(dir.path()).unwrap();
        let err = recover(dir.path(), &segs, 0).unwrap_err().to_string();
        assert!(err.contains(&format!("at byte offset {one}")), "{err}");
        // The zeros have no newline: the damaged line runs through 4.
        assert!(err.contains("entry 5 follows it intact"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), damaged, "nothing cut");
        // Under a weaker durability later group commits may be unsynced
        // too: it is cut, and kept.
        let checkpoint = Checkpoint::default();
        let r = super::recover(dir.path(), &segs, &checkpoint, false, &mut |_, _| {}).unwrap();
        assert_eq!(r.truncated.unwrap().offset, one as u64);
    }

    #[test]
    fn a_segment_may_start_past_a_gap_the_checkpoint_covers() {
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2], &[6, 7]]);
        let r = recover(dir.path(), &segs, 5).unwrap();
        assert_eq!(
            (seqs(&r), r.1.first, r.1.last),
            (vec![6, 7], Some(1), Some(7))
        );
        let err = recover(dir.path(), &segs, 4).unwrap_err().to_string();
        assert!(
            err.contains("sequence number 6 where 3 was expected"),
            "{err}"
        );
    }

    #[test]
    fn a_gap_is_reported_at_the_line_start() {
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2, 4]]);
        let at = 2 * line(1, BODY).len();
        let err = recover(dir.path(), &segs, 0).unwrap_err().to_string();
        assert!(err.contains(&format!("at byte offset {at}")), "{err}");
        assert!(
            err.contains("sequence number 4 where 3 was expected"),
            "{err}"
        );
    }

    /// Lines of a group commit starting at `batch`, after failed appends
    /// took the numbers after `prev`.
    fn after_gap(seqs: std::ops::RangeInclusive<u64>, prev: u64) -> Vec<u8> {
        let batch = *seqs.start();
        seqs.flat_map(|s| line_in_batch(s, batch, Some(prev), BODY))
            .collect()
    }

    #[test]
    fn a_gap_failed_appends_left_is_accepted_where_declared() {
        // 3 and 4 failed; 5 and 6 say so. 7 then follows as usual.
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2]]);
        append(&segs[0].1, &after_gap(5..=6, 2));
        append(&segs[0].1, &batches(&[&[7]]));
        let r = recover(dir.path(), &segs, 0).unwrap();
        assert_eq!(
            (seqs(&r), r.1.first, r.1.last),
            (vec![1, 2, 5, 6, 7], Some(1), Some(7))
        );
        // A declaration that does not match what precedes is not a gap.
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2]]);
        let at = append(&segs[0].1, &after_gap(5..=6, 1));
        let err = recover(dir.path(), &segs, 0).unwrap_err().to_string();
        assert!(err.contains(&format!("at byte offset {at}")), "{err}");
        assert!(
            err.contains("sequence number 5 where 3 was expected"),
            "{err}"
        );
    }

    #[test]
    fn a_segment_started_by_failed_appends_opens_alone() {
        // The segment was named for the first failed append (3); its first
        // entry is 5. The segment before it was replayed and removed.
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment::path(dir.path(), 3), after_gap(5..=6, 2)).unwrap();
        let segs = segment::list(dir.path()).unwrap();
        let r = recover(dir.path(), &segs, 2).unwrap();
        assert_eq!(
            (seqs(&r), r.1.first, r.1.last),
            (vec![5, 6], Some(3), Some(6))
        );
    }

    #[test]
    fn a_segment_started_inside_a_gap_opens_alone() {
        // Failed appends took 3 to 8; the segment was started by the one
        // that took 5 (the writer rotated mid-gap). Its first entry is 9,
        // declaring the gap from 3. The segment before was replayed and
        // removed.
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment::path(dir.path(), 5), after_gap(9..=10, 2)).unwrap();
        let segs = segment::list(dir.path()).unwrap();
        let r = recover(dir.path(), &segs, 2).unwrap();
        assert_eq!(
            (seqs(&r), r.1.first, r.1.last),
            (vec![9, 10], Some(3), Some(10))
        );
        // A declaration past the segment's name is no gap the writer left.
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment::path(dir.path(), 5), after_gap(9..=10, 6)).unwrap();
        let segs = segment::list(dir.path()).unwrap();
        let err = recover(dir.path(), &segs, 6).unwrap_err().to_string();
        assert!(
            err.contains("sequence number 9 where 5 was expected"),
            "{err}"
        );
        // After an entry, the declaration must name exactly that entry.
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2, 3]]);
        let at = append(&segs[0].1, &after_gap(9..=10, 2));
        let err = recover(dir.path(), &segs, 0).unwrap_err().to_string();
        assert!(err.contains(&format!("at byte offset {at}")), "{err}");
    }

    #[test]
    fn damage_to_the_first_line_after_a_gap_is_cut_as_one_group_commit() {
        // 5..=7 torn by a power loss after failed appends took 3 and 4: a
        // hole over 5, then 6 and 7 of the same group commit.
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2]]);
        let group = after_gap(5..=7, 2);
        let one = line_in_batch(5, 5, Some(2), BODY).len();
        let mut tail = vec![0u8; one];
        tail.extend_from_slice(&group[one..]);
        let at = append(&segs[0].1, &tail);
        let r = recover(dir.path(), &segs, 0).unwrap();
        assert_eq!((seqs(&r), r.1.truncated.unwrap().offset), (vec![1, 2], at));
    }
}
