//! The checkpoint file: a header line, then two slots of equal size, each
//! holding a whole checkpoint text (see [`checkpoint`](super::checkpoint))
//! padded with newlines. A write overwrites the slot of its generation's
//! parity in place and syncs it: the file never grows, so a full disk never
//! blocks a checkpoint (and with it the replay that frees the disk). A write
//! torn by a crash leaves the other slot, one generation older, intact;
//! reading takes the valid slot with the higher generation.
//!
//! A text larger than a slot (many waiting tables) gets a new file with
//! larger slots, written beside it and renamed over it, which does need
//! space. Files of earlier versions (a bare text) are read as they are and
//! replaced by a slotted file at the next write.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use super::checkpoint::{Checkpoint, FILE, Stored};
use super::segment;
use crate::{Error, Result};

/// The first line of a slotted file, before its slot size.
const MAGIC: &str = "octopus checkpoint, two slots of";
/// The header's size: the first line, padded.
const HEADER: u64 = 64;
/// The smallest slot: room for the `+seq` lines of a whole replay batch
/// that failed part way (about 10 bytes each), so even that checkpoint is
/// written in place on a full disk.
const MIN_SLOT: u64 = 64 * 1024;
/// The largest slot a header may name (a larger one is damage).
const MAX_SLOT: u64 = 1 << 30;

/// Reads the checkpoint of `dir`; `None` if it has none.
pub(super) fn read(dir: &Path) -> Result<Option<Stored>> {
    let path = dir.join(FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(segment::io_error(&path, None, e)),
    };
    let bad = |reason: String| Error::journal(&path, None, format!("damaged checkpoint: {reason}"));
    let Some(slot) = slot_size(&bytes) else {
        let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        return Checkpoint::parse(text, &bad).map(Some);
    };
    let mut best: Option<Stored> = None;
    let mut why = Vec::new();
    for (n, chunk) in bytes[HEADER as usize..]
        .chunks(slot as usize)
        .take(2)
        .enumerate()
    {
        let parsed = std::str::from_utf8(unpadded(chunk))
            .map_err(|_| bad("not UTF-8 text".into()))
            .and_then(|text| Checkpoint::parse(text, &bad))
            .and_then(|s| match s.checksummed {
                true => Ok(s),
                false => Err(bad("no checksum".into())),
            });
        // Of two slots with one generation (a write retried after its
        // rename path failed to report), the one of its parity was written
        // last.
        let newer = |s: &Stored, b: &Stored| {
            let (g, h) = (s.checkpoint.generation, b.checkpoint.generation);
            g > h || (g == h && g % 2 == n as u64)
        };
        match parsed {
            Ok(s) if best.as_ref().is_none_or(|b| newer(&s, b)) => best = Some(s),
            Ok(_) => {}
            Err(e) => why.push(format!("slot {n}: {e}")),
        }
    }
    best.map(Some)
        .ok_or_else(|| bad(format!("neither slot is valid ({})", why.join("; "))))
}

/// A slot's text without the newlines that pad it (most of the slot),
/// skipped a block at a time.
fn unpadded(slot: &[u8]) -> &[u8] {
    const BLOCK: usize = 512;
    const PADDING: [u8; BLOCK] = [b'\n'; BLOCK];
    let mut end = slot.len();
    while end >= BLOCK && slot[end - BLOCK..end] == PADDING {
        end -= BLOCK;
    }
    while end > 0 && slot[end - 1] == b'\n' {
        end -= 1;
    }
    &slot[..end]
}

/// The slot size of a slotted file, from its header.
fn slot_size(bytes: &[u8]) -> Option<u64> {
    let head = std::str::from_utf8(bytes.get(..HEADER as usize)?).ok()?;
    let size: u64 = head
        .strip_prefix(MAGIC)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    ((MIN_SLOT..=MAX_SLOT).contains(&size) && bytes.len() as u64 == HEADER + 2 * size)
        .then_some(size)
}

/// Writes `text` (a checkpoint of generation `generation`) durably: in
/// place into its slot if the file is slotted and the text fits, otherwise
/// as a new file.
pub(super) fn write(dir: &Path, text: &str, generation: u64) -> std::io::Result<()> {
    let path = dir.join(FILE);
    if let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) {
        let mut head = vec![0u8; HEADER as usize];
        let slot = file
            .read_exact_at(&mut head, 0)
            .ok()
            .and_then(|()| header_slot(&head))
            .filter(|slot| text.len() as u64 <= *slot)
            .filter(|slot| file.metadata().is_ok_and(|m| m.len() == HEADER + 2 * slot));
        if let Some(slot) = slot {
            let at = HEADER + (generation % 2) * slot;
            file.write_all_at(&padded(text, slot), at)?;
            return file.sync_data();
        }
    }
    let slot = (text.len() as u64).next_power_of_two().max(MIN_SLOT);
    let mut bytes = format!("{MAGIC} {slot}\n").into_bytes();
    bytes.resize(HEADER as usize, b'\n');
    // Both slots hold the text: either is valid until the next write.
    bytes.extend(padded(text, slot));
    bytes.extend(padded(text, slot));
    let tmp = dir.join("checkpoint.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()
}

fn header_slot(head: &[u8]) -> Option<u64> {
    let head = std::str::from_utf8(head).ok()?;
    head.strip_prefix(MAGIC)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|s| (MIN_SLOT..=MAX_SLOT).contains(s))
}

/// `text` padded with newlines to `slot` bytes.
fn padded(text: &str, slot: u64) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(slot as usize, b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(seq: u64, generation: u64) -> Checkpoint {
        Checkpoint {
            seq,
            generation,
            ..Checkpoint::default()
        }
    }

    #[test]
    fn a_slot_is_read_up_to_its_padding() {
        for len in [0, 1, 7, 511, 512, 513, 1024, 1500] {
            let text: String = (0..len)
                .map(|i| if i % 9 == 8 { '\n' } else { 'a' })
                .collect();
            let text = format!("{text}z");
            let slot = padded(&text, MIN_SLOT);
            assert_eq!(unpadded(&slot), text.as_bytes(), "text of {len} bytes");
        }
        assert_eq!(unpadded(&padded("", MIN_SLOT)), b"");
    }

    fn seq(dir: &Path) -> (u64, u64) {
        let s = read(dir).unwrap().unwrap();
        (s.checkpoint.seq, s.checkpoint.generation)
    }

    #[test]
    fn writes_alternate_slots_and_a_torn_one_leaves_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = checkpoint(0, 0);
        cp.write(dir.path()).unwrap();
        let len = fs::metadata(dir.path().join(FILE)).unwrap().len();
        assert_eq!(len, HEADER + 2 * MIN_SLOT);
        for n in 1..=5 {
            cp.seq = n * 10;
            cp.write(dir.path()).unwrap();
            assert_eq!(seq(dir.path()), (n * 10, n + 1));
            assert_eq!(fs::metadata(dir.path().join(FILE)).unwrap().len(), len);
        }
        // A crash mid-write of generation 7 (slot 1): generation 6 stands.
        let mut bytes = fs::read(dir.path().join(FILE)).unwrap();
        let slot1 = (HEADER + MIN_SLOT) as usize;
        bytes[slot1..slot1 + 3].copy_from_slice(b"999");
        fs::write(dir.path().join(FILE), &bytes).unwrap();
        assert_eq!(seq(dir.path()), (50, 6));
        // Both damaged: an error naming the file.
        let slot0 = HEADER as usize;
        bytes[slot0..slot0 + 2].copy_from_slice(b"77");
        fs::write(dir.path().join(FILE), &bytes).unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("neither slot is valid"), "{err}");
    }

    #[test]
    fn a_text_larger_than_a_slot_gets_a_larger_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = checkpoint(3, 0);
        cp.write(dir.path()).unwrap();
        cp.applied = (4..20_000).collect();
        cp.write(dir.path()).unwrap();
        let len = fs::metadata(dir.path().join(FILE)).unwrap().len();
        assert!(len > HEADER + 2 * MIN_SLOT, "{len}");
        let back = read(dir.path()).unwrap().unwrap().checkpoint;
        assert_eq!(back, cp);
    }

    #[test]
    fn a_bare_text_of_an_earlier_version_is_read() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), "12\nusers 15\n+14\n").unwrap();
        let s = read(dir.path()).unwrap().unwrap();
        assert!(!s.checksummed);
        assert_eq!((s.checkpoint.seq, s.checkpoint.tables["users"]), (12, 15));
        assert!(s.checkpoint.applied.contains(&14));
    }
}
