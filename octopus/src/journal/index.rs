//! The pending index (the latest pending entry of each key, so reads and
//! write-time checks see writes made during an outage) and the per-key
//! locks that make a write's check and its append one step.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value as Json};
use tokio::sync::OwnedMutexGuard;

use super::entry::{self, Entry};
use crate::schema::Schema;
use crate::value::{Key, Record};

/// A pending write, as reads see it during an outage.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// The latest pending write of the key stores this row.
    Put(Record),
    /// The latest pending write of the key deletes it.
    Deleted,
}

/// The row of an indexed put: as written in this process, or as read back
/// from a segment on open (decoded by column name on lookup).
#[derive(Debug, Clone)]
pub(super) enum Row {
    Record(Record),
    Json(Map<String, Json>),
}

/// The latest pending entry of one key.
#[derive(Debug, Clone)]
pub(super) enum Indexed {
    Put {
        seq: u64,
        fingerprint: u64,
        row: Row,
    },
    Delete {
        seq: u64,
    },
}

impl Indexed {
    pub(super) fn seq(&self) -> u64 {
        match self {
            Indexed::Put { seq, .. } | Indexed::Delete { seq } => *seq,
        }
    }

    /// The entry as the index keeps it, from a decoded one.
    pub(super) fn of_entry(e: &Entry) -> Self {
        match e.op.record() {
            Some(map) => Indexed::Put {
                seq: e.seq,
                fingerprint: e.fingerprint,
                row: Row::Json(map.clone()),
            },
            None => Indexed::Delete { seq: e.seq },
        }
    }
}

/// `(table, key)`, with the key's type kept apart (`5` and `"5"` differ).
pub(super) type IndexKey = (String, String);

pub(super) fn index_key(table: &str, key: &Key) -> IndexKey {
    let k = match key {
        Key::Int(i) => format!("n{i}"),
        Key::UInt(u) => format!("n{u}"),
        Key::Text(s) => format!("s{s}"),
    };
    (table.to_owned(), k)
}

/// What an append does to the index once it is durable.
pub(super) struct IndexUpdate {
    pub key: IndexKey,
    pub value: Option<(u64, Row)>,
}

impl IndexUpdate {
    fn indexed(&self, seq: u64) -> Indexed {
        match &self.value {
            Some((fingerprint, row)) => Indexed::Put {
                seq,
                fingerprint: *fingerprint,
                row: row.clone(),
            },
            None => Indexed::Delete { seq },
        }
    }
}

/// The latest pending entry per key.
#[derive(Default)]
pub(super) struct Index {
    map: Mutex<HashMap<IndexKey, Indexed>>,
}

impl Index {
    pub(super) fn from_entries<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Self {
        let map = entries
            .into_iter()
            .map(|e| (index_key(&e.table, &e.key), Indexed::of_entry(e)))
            .collect();
        Index {
            map: Mutex::new(map),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IndexKey, Indexed>> {
        // Every critical section leaves the map consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, key: &IndexKey) -> Option<Indexed> {
        self.lock().get(key).cloned()
    }

    pub(super) fn contains(&self, key: &IndexKey) -> bool {
        self.lock().contains_key(key)
    }

    /// Records durable appends, `first_seq` onwards.
    pub(super) fn apply<'a>(&self, first_seq: u64, updates: impl Iterator<Item = &'a IndexUpdate>) {
        let mut map = self.lock();
        for (i, u) in updates.enumerate() {
            map.insert(u.key.clone(), u.indexed(first_seq + i as u64));
        }
    }

    /// Forgets the given entries of a replayed batch: a key's slot goes only
    /// if it holds no later entry.
    pub(super) fn remove_done<'a>(&self, done: impl Iterator<Item = &'a Entry>) {
        let mut map = self.lock();
        for e in done {
            let k = index_key(&e.table, &e.key);
            if map.get(&k).is_some_and(|i| i.seq() <= e.seq) {
                map.remove(&k);
            }
        }
    }
}

/// Decodes an indexed entry for `schema`; an entry written under another
/// shape of the model is read by column name.
pub(super) fn decode(
    schema: &'static Schema,
    indexed: Indexed,
) -> Result<Pending, (u64, String, String)> {
    match indexed {
        Indexed::Delete { .. } => Ok(Pending::Deleted),
        Indexed::Put {
            row: Row::Record(r),
            fingerprint,
            ..
        } if fingerprint == schema.fingerprint() => Ok(Pending::Put(r)),
        Indexed::Put { row, seq, .. } => {
            let map = match row {
                Row::Json(m) => m,
                Row::Record(r) => entry::record_json(schema, &r),
            };
            entry::record_from_json(schema, &map)
                .map(Pending::Put)
                .map_err(|(column, reason)| (seq, column, reason))
        }
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
