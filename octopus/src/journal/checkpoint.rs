//! The checkpoint: how far replay has got, durably.
//!
//! The file holds the sequence number up to which every entry is done
//! (applied or dead-lettered), then optional `<table> <seq>` lines: every
//! entry of that table up to that number is done too. Those lines exist
//! while entries of another table wait for their model, so replay of one
//! table never waits for another's. A file of the first format (one number)
//! reads as a checkpoint without tables. `+<seq>` lines name entries after
//! the first number already applied: the part of a batch one transaction
//! committed before a later one failed, so a restart never applies it again.
//! The last line, `crc <hex>`, is the CRC-32 of everything before it: a
//! damaged or hand-edited checkpoint is an error naming the file, and only
//! a checkpoint this version wrote may be ahead of the journal's last entry
//! (see [`verify`](super::verify)). Files without it (written before it
//! existed) are read as they are. Every number is at most [`MAX_SEQ`], so
//! no arithmetic on a checkpoint can overflow.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;

use super::entry::{Entry, crc32};
use super::segment;
use crate::{Error, Result};

/// How far replay has got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Checkpoint {
    /// Every entry up to this sequence number is done.
    pub seq: u64,
    /// Per table, every entry of it up to this sequence number is done.
    pub tables: BTreeMap<String, u64>,
    /// Entries after `seq` already applied: the part of a batch a
    /// transaction committed before a later part failed (`+<seq>` lines).
    pub applied: BTreeSet<u64>,
}

pub(super) const FILE: &str = "checkpoint";

/// The largest sequence number a journal file may hold (2^62): far beyond
/// any journal's life, and far enough below `u64::MAX` that `+ 1` never
/// overflows.
pub(super) const MAX_SEQ: u64 = 1 << 62;

/// A checkpoint as read from its file.
#[derive(Debug)]
pub(super) struct Stored {
    pub checkpoint: Checkpoint,
    /// Whether the file carried its checksum (written by this version).
    pub checksummed: bool,
}

impl Checkpoint {
    /// Whether `e` was already applied or dead-lettered.
    pub(super) fn done(&self, e: &Entry) -> bool {
        e.seq <= self.seq
            || self.tables.get(&e.table).is_some_and(|w| e.seq <= *w)
            || self.applied.contains(&e.seq)
    }

    /// Marks everything up to `seq` done, dropping table marks it covers.
    pub(super) fn advance(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
        let floor = self.seq;
        self.tables.retain(|_, w| *w > floor);
        self.applied.retain(|s| *s > floor);
    }

    /// The checkpoint file of `dir`; `None` if there is none.
    pub(super) fn read(dir: &Path) -> Result<Option<Stored>> {
        let path = dir.join(FILE);
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(segment::io_error(&path, None, e)),
        };
        let bad = |reason: String| Error::Journal {
            path: path.display().to_string(),
            offset: None,
            reason: format!("damaged checkpoint: {reason}"),
        };
        let text = String::from_utf8(text).map_err(|_| bad("not UTF-8 text".into()))?;
        let (body, checksummed) = match text.trim_end().rsplit_once('\n') {
            Some((body, last)) if last.starts_with("crc ") => {
                let body = format!("{body}\n");
                let crc = format!("crc {:08x}", crc32(&[body.as_bytes()]));
                if last != crc {
                    return Err(bad(format!(
                        "its checksum is {last:?}, its text's is {crc:?}"
                    )));
                }
                (body, true)
            }
            _ => (text, false),
        };
        let number = |n: &str, line: &str| match n.parse::<u64>() {
            Ok(n) if n <= MAX_SEQ => Ok(n),
            Ok(n) => Err(bad(format!(
                "sequence number {n} is out of range (at most {MAX_SEQ})"
            ))),
            Err(_) => Err(bad(format!("not a checkpoint line: {line:?}"))),
        };
        let mut lines = body.lines();
        let first = lines.next().unwrap_or("").trim();
        let seq = number(first, first)?;
        let (mut tables, mut applied) = (BTreeMap::new(), BTreeSet::new());
        for line in lines.map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(n) = line.strip_prefix('+') {
                applied.insert(number(n, line)?);
                continue;
            }
            let (table, n) = line
                .rsplit_once(' ')
                .ok_or_else(|| bad(format!("not a checkpoint line: {line:?}")))?;
            tables.insert(table.to_owned(), number(n, line)?);
        }
        Ok(Some(Stored {
            checkpoint: Checkpoint {
                seq,
                tables,
                applied,
            },
            checksummed,
        }))
    }

    /// Replaces the file atomically and durably.
    pub(super) fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("checkpoint.tmp");
        let mut f = File::create(&tmp)?;
        let mut text = format!("{}\n", self.seq);
        for (table, seq) in &self.tables {
            text.push_str(&format!("{table} {seq}\n"));
        }
        for seq in &self.applied {
            text.push_str(&format!("+{seq}\n"));
        }
        text.push_str(&format!("crc {:08x}\n", crc32(&[text.as_bytes()])));
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(FILE))?;
        File::open(dir)?.sync_all()
    }
}
