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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;

use super::entry::Entry;
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

const FILE: &str = "checkpoint";

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

    pub(super) fn read(dir: &Path) -> Result<Checkpoint> {
        let path = dir.join(FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoint::default()),
            Err(e) => return Err(segment::io_error(&path, None, e)),
        };
        let bad = |line: &str| Error::Journal {
            path: path.display().to_string(),
            offset: None,
            reason: format!("not a checkpoint line: {line:?}"),
        };
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("").trim();
        let seq = first.parse().map_err(|_| bad(first))?;
        let (mut tables, mut applied) = (BTreeMap::new(), BTreeSet::new());
        for line in lines.map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(n) = line.strip_prefix('+') {
                applied.insert(n.parse().map_err(|_| bad(line))?);
                continue;
            }
            let (table, n) = line.rsplit_once(' ').ok_or_else(|| bad(line))?;
            tables.insert(table.to_owned(), n.parse().map_err(|_| bad(line))?);
        }
        Ok(Checkpoint {
            seq,
            tables,
            applied,
        })
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
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(FILE))?;
        File::open(dir)?.sync_all()
    }
}
