//! The checkpoint: how far replay has got, durably.
//!
//! Its text holds the sequence number up to which every entry is done
//! (applied or dead-lettered), then optional `<table> <seq>` lines: every
//! entry of that table up to that number is done too. Those lines exist
//! while entries of another table wait for their model, so replay of one
//! table never waits for another's. `+<seq>` lines name entries after the
//! first number already applied: the part of a batch one transaction
//! committed before a later one failed, so a restart never applies it
//! again. An optional `@<seq> <segment> <offset>` line says where entry
//! `seq` (done) ends: at byte `offset` of the segment whose first sequence
//! number is `segment`, so opening and replay start reading there instead
//! of reading every replayed entry again (see [`Resume`]). Then `gen <n>` (how many times it was written) and `crc <hex>`,
//! the CRC-32 of everything before it. Every number is at most
//! [`MAX_SEQ`], so no arithmetic on a checkpoint can overflow.
//!
//! How the text is kept in its file (two preallocated slots written in
//! turn, so a full disk never blocks it) is in [`slots`](super::slots).
//! Files of earlier versions (the text alone, without `gen` or `crc`) are
//! read as they are; a damaged or hand-edited checkpoint is an error naming
//! the file, and only a checksummed one may be ahead of the journal's last
//! entry (see [`verify`](super::verify)).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::entry::{Entry, crc32};
use super::slots;
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
    /// How many times it was written: the newer of the file's two slots
    /// has the higher number.
    pub generation: u64,
    /// Where reading may start (`@` line); at most `seq`.
    pub resume: Option<Resume>,
}

/// A place in the segments: entry `seq` ends at byte `offset` of the
/// segment whose first sequence number is `segment`, so the next entry (or
/// the end of the file) starts there. Segment bytes up to the durable end
/// never change, so a place taken from a line replay read stays true; one
/// a power loss took (the file now ends before it, or something else
/// starts there) is noticed on open, which then reads the segments from
/// their start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resume {
    /// The entry that ends there.
    pub seq: u64,
    /// The segment, by its first sequence number.
    pub segment: u64,
    /// The byte offset just past the entry's line.
    pub offset: u64,
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
        self.done_at(e.seq, &e.table)
    }

    /// The highest sequence number it calls done (its per-table marks and
    /// `+seq` lines included).
    pub(super) fn highest(&self) -> u64 {
        let tables = self.tables.values().copied().max().unwrap_or(0);
        let applied = self.applied.last().copied().unwrap_or(0);
        self.seq.max(tables).max(applied)
    }

    /// Whether entry `seq` of `table` was already applied or dead-lettered.
    pub(super) fn done_at(&self, seq: u64, table: &str) -> bool {
        seq <= self.seq
            || self.tables.get(table).is_some_and(|w| seq <= *w)
            || self.applied.contains(&seq)
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
        slots::read(dir)
    }

    /// Writes the checkpoint durably, as its next generation.
    pub(super) fn write(&mut self, dir: &Path) -> std::io::Result<()> {
        self.generation += 1;
        slots::write(dir, &self.render(), self.generation)
    }

    /// The checkpoint's text, checksummed.
    pub(super) fn render(&self) -> String {
        let mut text = format!("{}\n", self.seq);
        for (table, seq) in &self.tables {
            text.push_str(&format!("{table} {seq}\n"));
        }
        for seq in &self.applied {
            text.push_str(&format!("+{seq}\n"));
        }
        if let Some(r) = &self.resume {
            text.push_str(&format!("@{} {} {}\n", r.seq, r.segment, r.offset));
        }
        text.push_str(&format!("gen {}\n", self.generation));
        text.push_str(&format!("crc {:08x}\n", crc32(&[text.as_bytes()])));
        text
    }

    /// Parses a checkpoint's text (`bad` words the error). Text with a
    /// `crc` line must match it.
    pub(super) fn parse(text: &str, bad: &dyn Fn(String) -> Error) -> Result<Stored> {
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
            _ => (text.to_owned(), false),
        };
        let number = |n: &str, line: &str| match n.parse::<u64>() {
            Ok(n) if n <= MAX_SEQ => Ok(n),
            Ok(n) => Err(bad(format!(
                "sequence number {n} is out of range (at most {MAX_SEQ})"
            ))),
            Err(_) => Err(bad(format!("not a checkpoint line: {line:?}"))),
        };
        let mut lines: Vec<&str> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        // The generation is the last line of a checksummed text (a table
        // may be called `gen`).
        let generation = match lines.last() {
            Some(last) if checksummed && last.starts_with("gen ") => {
                let n = number(&last["gen ".len()..], last)?;
                lines.pop();
                n
            }
            _ => 0,
        };
        let first = lines.first().copied().unwrap_or("");
        let mut cp = Checkpoint {
            seq: number(first, first)?,
            generation,
            ..Checkpoint::default()
        };
        for line in lines.into_iter().skip(1) {
            if let Some(n) = line.strip_prefix('+') {
                cp.applied.insert(number(n, line)?);
            } else if let Some(place) = line.strip_prefix('@') {
                let parts: Vec<&str> = place.split(' ').collect();
                let [seq, segment, offset] = parts[..] else {
                    return Err(bad(format!("not a checkpoint line: {line:?}")));
                };
                cp.resume = Some(Resume {
                    seq: number(seq, line)?,
                    segment: number(segment, line)?,
                    offset: number(offset, line)?,
                });
            } else {
                let (table, n) = line
                    .rsplit_once(' ')
                    .ok_or_else(|| bad(format!("not a checkpoint line: {line:?}")))?;
                cp.tables.insert(table.to_owned(), number(n, line)?);
            }
        }
        Ok(Stored {
            checkpoint: cp,
            checksummed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Checkpoint> {
        Checkpoint::parse(text, &|why| Error::journal("checkpoint", None, why))
            .map(|s| s.checkpoint)
    }

    #[test]
    fn the_place_is_written_and_read_back() {
        let cp = Checkpoint {
            seq: 9,
            tables: [("parcels".to_owned(), 12)].into(),
            applied: [11].into(),
            generation: 3,
            resume: Some(Resume {
                seq: 9,
                segment: 4,
                offset: 1234,
            }),
        };
        assert_eq!(parse(&cp.render()).unwrap(), cp);
        for bad in [
            "9\n@9 4\n",
            "9\n@9 4 x\n",
            "9\n@9 4 5 6\n",
            "9\n@9 4 99999999999999999999\n",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("checkpoint"), "{bad:?}: {e}");
        }
    }
}
