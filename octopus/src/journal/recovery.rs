//! Recovery on open: every segment read and checked, a torn final entry cut
//! off.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::entry::Entry;
use super::error::EntryError;
use super::reader::{SegmentReader, corrupt, out_of_sequence};
use super::segment::io_error;
use crate::Error;

/// What recovery found.
#[derive(Debug)]
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
        let mut reader = SegmentReader::open(path, 0)?;
        while let Some(line) = reader.next_line()? {
            match line.entry {
                Ok(e) => {
                    let expected = last_seq.map_or(*first, |s| s + 1);
                    if e.seq != expected {
                        return Err(out_of_sequence(path, line.offset, e.seq, expected));
                    }
                    last_seq = Some(e.seq);
                    if e.seq > checkpoint {
                        pending.push(e);
                    }
                }
                Err(why) if is_last_segment && line.at_end => {
                    // A crash while appending: the entry was never
                    // acknowledged. Cut it off.
                    cut_off(path, line.offset, &why)?;
                    truncated = Some((path.clone(), line.offset));
                    break;
                }
                Err(why) => return Err(corrupt(path, line.offset, &why)),
            }
        }
    }
    Ok(Recovered {
        pending,
        last_seq: last_seq.unwrap_or(checkpoint).max(checkpoint),
        truncated,
    })
}

/// Truncates the segment at `path` to `offset`, durably, and says so.
fn cut_off(path: &Path, offset: u64, why: &EntryError) -> Result<(), Error> {
    let io = |e| io_error(path, Some(offset), e);
    let f = OpenOptions::new().write(true).open(path).map_err(io)?;
    f.set_len(offset).map_err(io)?;
    f.sync_all().map_err(io)?;
    tracing::warn!(target: "octopus::journal", segment = %path.display(), offset, reason = %why, "truncated a torn final entry");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::entry::line;
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

    fn seqs(r: &Recovered) -> Vec<u64> {
        r.pending.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_torn_tail_of_the_last_segment_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2], &[3, 4]]);
        let last = &segs[1].1;
        let at = append(last, &line(5, BODY)[..30]);
        let r = recover(&segs, 1).unwrap();
        assert_eq!((seqs(&r), r.last_seq), (vec![2, 3, 4], 4));
        assert_eq!(r.truncated, Some((last.clone(), at)));
        assert_eq!(fs::metadata(last).unwrap().len(), at);
        // A whole but damaged final line is torn too.
        append(last, b"\0\0\0\n");
        assert_eq!(
            recover(&segs, 0).unwrap().truncated,
            Some((last.clone(), at))
        );
        let r = recover(&segs, 0).unwrap();
        assert_eq!((seqs(&r), r.truncated), (vec![1, 2, 3, 4], None));
    }

    #[test]
    fn damage_elsewhere_is_an_error_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2], &[3, 4]]);
        // The same torn line, but at the end of a segment that is not last.
        let first = &segs[0].1;
        let at = append(first, &line(3, BODY)[..30]);
        let err = recover(&segs, 0).unwrap_err().to_string();
        assert!(err.contains(&format!("at byte offset {at}")), "{err}");
        assert!(err.contains("corrupt entry: entry cut short"), "{err}");
        assert_eq!(fs::metadata(first).unwrap().len(), at + 30, "nothing cut");
        // A damaged line in the middle of the last segment.
        let segs = write(dir.path(), &[&[1, 2], &[3, 4, 5]]);
        let mut bytes = fs::read(&segs[1].1).unwrap();
        let second = line(3, BODY).len();
        bytes[second + 12] ^= 1;
        fs::write(&segs[1].1, &bytes).unwrap();
        let err = recover(&segs, 0).unwrap_err().to_string();
        assert!(err.contains(&format!("at byte offset {second}")), "{err}");
        assert!(err.contains("corrupt entry: checksum mismatch"), "{err}");
    }

    #[test]
    fn a_gap_is_reported_at_the_line_start() {
        let dir = tempfile::tempdir().unwrap();
        let segs = write(dir.path(), &[&[1, 2, 4]]);
        let at = 2 * line(1, BODY).len();
        let err = recover(&segs, 0).unwrap_err().to_string();
        assert!(err.contains(&format!("at byte offset {at}")), "{err}");
        assert!(
            err.contains("sequence number 4 where 3 was expected"),
            "{err}"
        );
    }
}
