//! A journal looked at from outside: what is pending, what was
//! dead-lettered, and whether its files are sound, without opening it. No
//! lock is taken and nothing is written, so it is safe on the journal of a
//! running application (whose writer may be appending meanwhile: a last
//! line cut short is an append in progress, not damage).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::entry::Entry;
use super::error::EntryError;
use super::reader::SegmentReader;
use super::{dead, segment};
use crate::Result;

/// What a look at a journal directory found ([`inspect`]).
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// The process holding the journal's lock (the application that has
    /// it open), if one does; `None` if none does or that cannot be told
    /// (see [`Inspection::holder_known`]).
    pub holder: Option<u32>,
    /// Whether `holder` could be told (Linux, from `/proc/locks`).
    pub holder_known: bool,
    /// Every entry up to this sequence number is done (applied to the
    /// primary or dead-lettered); 0 without a checkpoint.
    pub checkpoint: u64,
    /// The segment files, oldest first: first sequence number, path, bytes.
    pub segments: Vec<(u64, PathBuf, u64)>,
    /// The first and last sequence numbers read, if any.
    pub first: Option<u64>,
    /// See `first`.
    pub last: Option<u64>,
    /// Entries the checkpoint does not cover, per table.
    pub pending: BTreeMap<String, u64>,
    /// When the oldest pending entry was written (unix milliseconds).
    pub oldest_pending: Option<i64>,
    /// Dead letters not yet requeued.
    pub dead_letters: usize,
    /// Bytes recovery cut off the journal and kept (`quarantine-…bin`).
    pub quarantined: Vec<PathBuf>,
    /// A last line cut short: an append in progress (or one a crash
    /// interrupted, which recovery will cut off), by segment and offset.
    pub unfinished: Option<(PathBuf, u64)>,
    /// What is wrong with the files: damaged lines and missing entries,
    /// each naming the file and byte offset. Empty for a sound journal.
    pub damage: Vec<String>,
}

impl Inspection {
    /// How many entries are pending, in all tables.
    pub fn pending_total(&self) -> u64 {
        self.pending.values().sum()
    }
}

/// Looks at the journal in `dir` without opening it (see the module docs),
/// calling `visit` with every pending entry, oldest first. Fails only if
/// the directory or a file cannot be read; damage is reported in
/// [`Inspection::damage`].
pub fn inspect(dir: &Path, visit: &mut dyn FnMut(&Entry)) -> Result<Inspection> {
    let mut found = Inspection::default();
    let stored = Checkpoint::read(dir)?;
    let checkpoint = stored.map(|s| s.checkpoint).unwrap_or_default();
    found.checkpoint = checkpoint.seq;
    (found.holder, found.holder_known) = match lock_holder(dir) {
        Some(holder) => (holder, true),
        None => (None, false),
    };
    let segments = segment::list(dir)?;
    for (n, (first, path)) in segments.iter().enumerate() {
        let bytes = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            // Replayed and removed since the listing (a live journal).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(segment::io_error(path, None, e)),
        };
        found.segments.push((*first, path.clone(), bytes));
        let last = n + 1 == segments.len();
        match read_segment(path, *first, last, &checkpoint, &mut found, visit) {
            Err(_) if !path.exists() => {
                found.segments.pop();
            }
            other => other?,
        }
    }
    if let Some(first) = found.first
        && first > checkpoint.seq + 1
    {
        found.damage.push(format!(
            "{}: the checkpoint covers entries up to {}, the first segment starts at {first}: entries between are missing",
            dir.join(super::checkpoint::FILE).display(),
            checkpoint.seq
        ));
    }
    found.dead_letters = dead::read(dir)?
        .iter()
        .filter(|l| l.requeued_as.is_none())
        .count();
    found.quarantined = std::fs::read_dir(dir)
        .map_err(|e| segment::io_error(dir, None, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("quarantine-"))
        })
        .collect();
    found.quarantined.sort();
    Ok(found)
}

/// Reads one segment into `found`.
fn read_segment(
    path: &Path, first: u64, last_segment: bool, checkpoint: &Checkpoint, found: &mut Inspection,
    visit: &mut dyn FnMut(&Entry),
) -> Result<()> {
    let mut reader = SegmentReader::open(path, 0)?;
    let mut at_start = true;
    while let Some(line) = reader.next_line()? {
        let e = match line.entry {
            Ok(e) => e,
            Err(EntryError::CutShort) if last_segment => {
                found.unfinished = Some((path.to_path_buf(), line.offset));
                break;
            }
            Err(why) => {
                found.damage.push(format!(
                    "{} at byte offset {}: {why}",
                    path.display(),
                    line.offset
                ));
                break;
            }
        };
        let expected = found.last.map_or(first, |s| s + 1);
        // A gap failed appends left, declared by the entry after it (from
        // the journal's first segment name on, the gap may start earlier);
        // or a segment starting past entries replayed, then lost.
        let declared = e.prev.is_some_and(|p| match found.last {
            Some(_) => p + 1 == expected,
            None => p < expected,
        });
        let follows = e.seq == expected
            || (e.seq > expected && declared)
            || (at_start && e.seq == first && e.seq - 1 <= checkpoint.highest());
        if !follows {
            found.damage.push(format!(
                "{} at byte offset {}: sequence number {} where {expected} was expected",
                path.display(),
                line.offset,
                e.seq
            ));
            break;
        }
        at_start = false;
        found.first.get_or_insert(e.seq);
        found.last = Some(e.seq);
        if !checkpoint.done(&e) {
            *found.pending.entry(e.table.clone()).or_default() += 1;
            found.oldest_pending.get_or_insert(e.time);
            visit(&e);
        }
    }
    Ok(())
}

/// The process holding `dir`'s journal lock, read from `/proc/locks`
/// (taking the lock, even for a moment, could make the application fail to
/// open its journal): `Some(None)` if no process holds it, `None` where
/// `/proc/locks` cannot tell.
#[cfg(target_os = "linux")]
fn lock_holder(dir: &Path) -> Option<Option<u32>> {
    use std::os::unix::fs::MetadataExt as _;
    let file = match std::fs::metadata(dir.join("LOCK")) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(None),
        Err(_) => return None,
    };
    // As the kernel prints it: major and minor (glibc's encoding of
    // `st_dev`) in hex, the inode in decimal.
    let dev = file.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let id = format!("{major:02x}:{minor:02x}:{}", file.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`
    let holder = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == id)?;
        let pid = fields.get(at.checked_sub(1)?)?.parse().ok()?;
        fields.contains(&"FLOCK").then_some(pid)
    });
    Some(holder)
}

#[cfg(not(target_os = "linux"))]
fn lock_holder(_: &Path) -> Option<Option<u32>> {
    None
}
