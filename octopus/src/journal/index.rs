//! The pending index: for each key with a pending entry, where its latest
//! entry is in the segments (not the row: memory stays bounded however long
//! the outage; a read of a pending key reads the entry back, see
//! [`read_back`]). Reads and write-time checks see writes made during an
//! outage through it. Also the per-key locks that make a write's check and
//! its append one step.
//!
//! An entry with an integer key costs 32 bytes in a hash map (a table
//! number, the key, the position); one with a text or negative key costs
//! 48, plus the key's text.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::OwnedMutexGuard;

use super::entry::{self, Entry};
use super::segment;
use crate::schema::Schema;
use crate::value::{Key, Record};
use crate::{Error, Result};

/// A pending write, as reads see it during an outage.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// The latest pending write of the key stores this row.
    Put(Record),
    /// The latest pending write of the key deletes it.
    Deleted,
}

/// A key as the index keeps it: `5` and `"5"` differ; `Int(5)` and
/// `UInt(5)` are one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum KeyRepr {
    Natural(u64),
    Negative(i64),
    Text(Box<str>),
}

/// `(table number, key)`.
pub(super) type IndexKey = (u32, KeyRepr);

/// Where an entry is: its sequence number, the segment holding it (as the
/// distance back to the segment's first sequence number), and where its
/// line starts (segments stay under 4 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Position {
    /// The sequence number; the top bit says the entry stores a row.
    seq_put: u64,
    /// The line's byte offset in the segment.
    offset: u32,
    /// `seq` minus the segment's first sequence number.
    back: u32,
}

const PUT: u64 = 1 << 63;

impl Position {
    /// `seq`'s line at `offset` in the segment starting at `segment`.
    pub(super) fn new(seq: u64, put: bool, segment: u64, offset: u64) -> Self {
        Position {
            seq_put: seq | if put { PUT } else { 0 },
            // Out of range only past 4 GiB, which segments never reach:
            // reading back would then find another entry, an error.
            offset: u32::try_from(offset).unwrap_or(u32::MAX),
            back: u32::try_from(seq.saturating_sub(segment)).unwrap_or(u32::MAX),
        }
    }

    /// The line's byte offset in its segment.
    pub(super) fn offset(&self) -> u64 {
        u64::from(self.offset)
    }

    pub(super) fn seq(&self) -> u64 {
        self.seq_put & !PUT
    }

    /// Whether the entry stores a row (else it deletes the key).
    pub(super) fn put(&self) -> bool {
        self.seq_put & PUT != 0
    }

    /// The first sequence number of the segment holding the entry.
    pub(super) fn segment(&self) -> u64 {
        self.seq() - u64::from(self.back)
    }
}

/// What an append does to the index once it is durable: the key, and
/// whether the entry stores a row.
pub(super) struct IndexUpdate {
    pub key: IndexKey,
    pub put: bool,
}

/// The latest pending entry per key.
#[derive(Default)]
pub(super) struct Index {
    map: Mutex<Maps>,
    /// Table names by number.
    tables: RwLock<HashMap<Box<str>, u32>>,
}

/// Keys that are natural numbers (most keys) apart, stored compactly.
#[derive(Default)]
struct Maps {
    natural: HashMap<(u32, u64), Position>,
    other: HashMap<IndexKey, Position>,
}

impl Maps {
    fn get(&self, key: &IndexKey) -> Option<&Position> {
        match key {
            (t, KeyRepr::Natural(u)) => self.natural.get(&(*t, *u)),
            _ => self.other.get(key),
        }
    }

    fn insert(&mut self, key: IndexKey, position: Position) {
        match key {
            (t, KeyRepr::Natural(u)) => self.natural.insert((t, u), position),
            _ => self.other.insert(key, position),
        };
    }

    fn remove(&mut self, key: &IndexKey) {
        match key {
            (t, KeyRepr::Natural(u)) => self.natural.remove(&(*t, *u)),
            _ => self.other.remove(key),
        };
    }
}

impl Index {
    fn lock(&self) -> MutexGuard<'_, Maps> {
        // Every critical section leaves the maps consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index's key of `key` in `table`.
    pub(super) fn key(&self, table: &str, key: &Key) -> IndexKey {
        let known = self
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .copied();
        let number = known.unwrap_or_else(|| {
            let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
            let next = tables.len() as u32;
            *tables.entry(table.into()).or_insert(next)
        });
        let repr = match key {
            Key::UInt(u) => KeyRepr::Natural(*u),
            Key::Int(i) => match u64::try_from(*i) {
                Ok(u) => KeyRepr::Natural(u),
                Err(_) => KeyRepr::Negative(*i),
            },
            Key::Text(s) => KeyRepr::Text(s.as_str().into()),
        };
        (number, repr)
    }

    pub(super) fn get(&self, key: &IndexKey) -> Option<Position> {
        self.lock().get(key).copied()
    }

    pub(super) fn contains(&self, key: &IndexKey) -> bool {
        self.lock().get(key).is_some()
    }

    /// The keys of `table` whose latest pending entry is numbered past
    /// `after` (integer keys as unsigned when not negative: normalize them
    /// with the schema).
    pub(super) fn keys_of(&self, table: &str, after: u64) -> Vec<Key> {
        let Some(number) = self
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .copied()
        else {
            return Vec::new();
        };
        let maps = self.lock();
        let natural = maps
            .natural
            .iter()
            .filter(|((t, _), p)| *t == number && p.seq() > after)
            .map(|((_, u), _)| Key::UInt(*u));
        let other = maps
            .other
            .iter()
            .filter(|((t, _), p)| *t == number && p.seq() > after)
            .map(|((_, k), _)| match k {
                KeyRepr::Natural(u) => Key::UInt(*u),
                KeyRepr::Negative(i) => Key::Int(*i),
                KeyRepr::Text(s) => Key::Text(s.to_string()),
            });
        natural.chain(other).collect()
    }

    /// Records durable entries: each key's latest position.
    pub(super) fn apply(&self, entries: impl Iterator<Item = (IndexKey, Position)>) {
        let mut map = self.lock();
        for (key, position) in entries {
            map.insert(key, position);
        }
    }

    /// Forgets the given entries of a replayed batch: a key's slot goes only
    /// if it holds no later entry.
    pub(super) fn remove_done<'a>(&self, done: impl Iterator<Item = &'a Entry>) {
        let keys: Vec<(IndexKey, u64)> =
            done.map(|e| (self.key(&e.table, &e.key), e.seq)).collect();
        let mut map = self.lock();
        for (k, seq) in keys {
            if map.get(&k).is_some_and(|p| p.seq() <= seq) {
                map.remove(&k);
            }
        }
    }
}

/// Reads the entry at `position` back from its segment in `dir`; `None` if
/// its segment is gone (replay applied it and removed the segment after the
/// position was looked up).
pub(super) fn read_back(dir: &Path, position: Position) -> Result<Option<Entry>> {
    let path = segment::path(dir, position.segment());
    let at = position.offset();
    let io = |e| segment::io_error(&path, Some(at), e);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    // The line, up to its newline, read in growing chunks.
    let mut line = Vec::new();
    let mut chunk = vec![0u8; 1024];
    let end = loop {
        let n = file
            .read_at(&mut chunk, at + line.len() as u64)
            .map_err(io)?;
        let scanned = line.len();
        line.extend_from_slice(&chunk[..n]);
        if let Some(i) = chunk[..n].iter().position(|b| *b == b'\n') {
            break scanned + i;
        }
        if n == 0 {
            break line.len();
        }
        chunk.resize(chunk.len() * 2, 0);
    };
    let e = entry::parse(&line[..end]).map_err(|why| {
        Error::journal(
            &path,
            Some(at),
            format!("reading a pending entry back: {why}"),
        )
    })?;
    if e.seq != position.seq() {
        return Err(Error::journal(
            &path,
            Some(at),
            format!(
                "reading pending entry {} back found entry {}",
                position.seq(),
                e.seq
            ),
        ));
    }
    Ok(Some(e))
}

/// A read-back entry for `schema`; an entry written under another shape of
/// the model is read by column name.
pub(super) fn decode(
    schema: &'static Schema, e: &Entry,
) -> std::result::Result<Pending, (u64, String, String)> {
    match e.op.record() {
        None => Ok(Pending::Deleted),
        Some(map) => entry::record_from_json(schema, map)
            .map(Pending::Put)
            .map_err(|(column, reason)| (e.seq, column, reason)),
    }
}

/// Striped per-key locks: a write holds its key's stripe from its check
/// against the pending index until its entry is in the index (the guard
/// travels with the append to the writer thread, so a caller that gives up
/// early does not release it before then).
pub(super) struct KeyLocks {
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
}

const STRIPES: usize = 4096;

impl Default for KeyLocks {
    fn default() -> Self {
        KeyLocks {
            stripes: (0..STRIPES).map(|_| Arc::default()).collect(),
        }
    }
}

impl KeyLocks {
    pub(super) async fn lock(&self, key: &IndexKey) -> OwnedMutexGuard<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let stripe = (h.finish() as usize) % self.stripes.len();
        self.stripes[stripe].clone().lock_owned().await
    }
}
