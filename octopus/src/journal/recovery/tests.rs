//! Recovery on hand-written segments: holes, damaged lines, checkpoints.

use std::fs;

use super::*;
use crate::journal::entry::{line, line_in_batch};
use crate::journal::segment;

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
    recover_at(dir, segments, seq, None)
}

/// Recovers with a checkpoint at `seq` holding the place `resume`.
fn recover_at(
    dir: &Path, segments: &[(u64, PathBuf)], seq: u64, resume: Option<Resume>,
) -> Result<(Vec<u64>, Recovered), Error> {
    let checkpoint = Checkpoint {
        seq,
        resume,
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

/// [`recover_at`] a place.
fn recover_from(
    dir: &Path, segments: &[(u64, PathBuf)], seq: u64, resume: Resume,
) -> Result<(Vec<u64>, Recovered), Error> {
    recover_at(dir, segments, seq, Some(resume))
}

#[test]
fn reading_starts_at_the_checkpoints_place() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write(dir.path(), &[&[1, 2], &[3, 4, 5]]);
    let end_of_3 = line(3, BODY).len() as u64;
    let place = |seq, segment, offset| Resume {
        seq,
        segment,
        offset,
    };
    // Entries 1 to 3 are not read: damage to them is not seen.
    fs::write(&segs[0].1, b"not a journal line\n").unwrap();
    let r = recover_from(dir.path(), &segs, 4, place(3, 3, end_of_3)).unwrap();
    assert_eq!((seqs(&r), r.1.last, r.1.resumed), (vec![5], Some(5), true));
    assert!(r.1.first.is_some_and(|f| f <= 4), "{:?}", r.1.first);
    // A place the segments do not agree with is not used: inside a line,
    // past the file's end, before an entry that does not follow, in a
    // segment that is gone, or past the checkpoint. The damage is seen.
    let write_first = || fs::write(&segs[0].1, [line(1, BODY), line(2, BODY)].concat()).unwrap();
    write_first();
    for wrong in [
        place(3, 3, end_of_3 - 1),
        place(3, 3, 10_000),
        place(2, 3, end_of_3),
        place(3, 9, end_of_3),
        place(5, 3, end_of_3 * 2),
    ] {
        let r = recover_from(dir.path(), &segs, 4, wrong).unwrap();
        assert_eq!((seqs(&r), r.1.resumed), (vec![5], false), "{wrong:?}");
        assert_eq!(r.1.first, Some(1));
    }
    // At the end of the file: nothing after the place.
    let end = fs::metadata(&segs[1].1).unwrap().len();
    let r = recover_from(dir.path(), &segs, 5, place(5, 3, end)).unwrap();
    assert_eq!((seqs(&r), r.1.last, r.1.resumed), (vec![], Some(5), true));
}
