//! The in-process store: the cache that needs no server (the role APC had in
//! the PHP original), also usable as a complete store for tests and tools.

use std::collections::HashMap;
use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::hash::BuildHasher;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Result;
use crate::cache::{FillToken, Lookup};
use crate::schema::Schema;
use crate::store::{check_key, check_record, key_of};
use crate::value::{Key, Record};

mod cache;
mod evict;
mod store;

use evict::evict_one;

/// Rows are grouped per table and model shape, so two models that share a
/// table name but differ in columns never see each other's rows.
type TableId = (&'static str, u64);

struct Entry {
    /// `None` is an invalidation marker: a miss for readers, and a CAS value
    /// that fills must match.
    record: Option<Record>,
    /// Bumped by every write of the entry (from the shard clock).
    cas: u64,
    expires: Option<Instant>,
    /// Shard clock reading at the last access, for eviction.
    touched: AtomicU64,
}

#[derive(Default)]
struct Shard {
    tables: HashMap<TableId, HashMap<Key, Entry>>,
    len: usize,
}

/// A concurrent in-memory store with an optional capacity bound and TTL.
///
/// - Concurrency: rows live in independently locked shards (16 once the
///   capacity allows), so readers of different keys do not contend; reads take
///   a shared lock only.
/// - Capacity: when a shard is full, an insert first drops expired rows, then
///   evicts the least recently used row among a sample of up to 32 (exact LRU
///   for small capacities). The bound counts rows across all tables.
/// - TTL: a row older than the TTL is a miss and is dropped on the next write
///   to its shard.
///
/// As a cache ([`Cache`](crate::Cache)) it holds what the plan puts in it, always with a
/// TTL (the configured one, or [`CACHE_TTL`]), and keeps invalidation markers
/// so late fills lose to writes; as a primary it implements
/// the full [`Store`](crate::Store) contract (used by tests and tools; it is not durable).
///
/// ```
/// use octopus::{MemoryOptions, MemoryStore};
/// use std::time::Duration;
/// let cache = MemoryStore::with_options(MemoryOptions::new().capacity(10_000).ttl(Duration::from_secs(60)));
/// # let _ = cache;
/// ```
pub struct MemoryStore {
    name: String,
    shards: Box<[RwLock<Shard>]>,
    clocks: Box<[AtomicU64]>,
    /// Per shard, one past the newest write (CAS) of any entry dropped
    /// without a write in its place: evicted, or found expired (0: none).
    /// A fill based on a lookup that found its key absent before then may
    /// be racing the write whose row or marker is gone, and fails.
    forgotten: Box<[AtomicU64]>,
    shard_capacity: Option<usize>,
    ttl: Option<Duration>,
    /// How long past its expiry a row may still be served as stale.
    stale_for: Option<Duration>,
    hasher: RandomState,
}

/// Settings of a [`MemoryStore`]: a bound, a TTL, a name.
#[derive(Debug, Default, Clone)]
pub struct MemoryOptions {
    capacity: Option<usize>,
    ttl: Option<Duration>,
    stale_for: Option<Duration>,
    name: Option<String>,
}

impl MemoryOptions {
    /// No bound, no TTL, named `memory`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bounds the number of rows held (at least 1).
    pub fn capacity(mut self, rows: usize) -> Self {
        self.capacity = Some(rows.max(1));
        self
    }

    /// Makes rows expire this long after they were written.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Keeps an expired row up to `window` past its expiry (while the
    /// capacity allows: expired rows are evicted first) so that a plan
    /// with [`stale_if_error`](crate::PlanBuilder::stale_if_error) can
    /// serve it while the primary is unavailable. An expired row is a miss
    /// for every other read; a write of its key replaces it as always.
    /// Default: none.
    pub fn stale_for(mut self, window: Duration) -> Self {
        self.stale_for = Some(window);
        self
    }

    /// Names the store in logs and errors (default `memory`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The store.
    fn build(self) -> MemoryStore {
        // Small bounds get one shard so the bound and LRU order are exact.
        let shards = match self.capacity {
            Some(c) if c < 1024 => 1,
            _ => 16,
        };
        MemoryStore {
            name: self.name.unwrap_or_else(|| "memory".to_owned()),
            shards: (0..shards).map(|_| RwLock::default()).collect(),
            clocks: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            forgotten: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            shard_capacity: self.capacity.map(|c| c.div_ceil(shards)),
            ttl: self.ttl,
            stale_for: self.stale_for,
            hasher: RandomState::new(),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An unbounded store without TTL.
    pub fn new() -> Self {
        MemoryOptions::new().build()
    }

    /// A store with a bound, a TTL or a name.
    pub fn with_options(options: MemoryOptions) -> Self {
        options.build()
    }

    /// Rows currently held, including expired rows not yet dropped.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len).sum()
    }

    /// Whether the store holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of(&self, table: TableId, key: &Key) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        (self.hasher.hash_one((table, key)) as usize) % self.shards.len()
    }

    fn live(&self, entry: &Entry, now: Instant) -> bool {
        entry.expires.is_none_or(|t| t > now)
    }

    fn find(&self, schema: &'static Schema, key: &Key, now: Instant) -> Lookup {
        let table = table_id(schema);
        let i = self.shard_of(table, key);
        let shard = read(&self.shards[i]);
        // Absent as of this clock reading (see `forgotten`).
        let absent = || {
            Lookup::Miss(FillToken::Cas(
                ABSENT | self.clocks[i].load(Ordering::Relaxed),
            ))
        };
        let Some(entry) = shard.tables.get(&table).and_then(|t| t.get(key)) else {
            return absent();
        };
        if !self.live(entry, now) {
            return absent();
        }
        let tick = self.clocks[i].fetch_add(1, Ordering::Relaxed);
        entry.touched.store(tick, Ordering::Relaxed);
        match &entry.record {
            Some(r) => Lookup::Hit(r.clone()),
            None => Lookup::Miss(FillToken::Cas(entry.cas)),
        }
    }

    /// The row of `key` if it expired less than `stale_for` ago: a row
    /// no write replaced (a write leaves a marker or a new row).
    fn find_stale(&self, schema: &'static Schema, key: &Key, now: Instant) -> Option<Record> {
        let window = self.stale_for?;
        let table = table_id(schema);
        let shard = read(&self.shards[self.shard_of(table, key)]);
        let entry = shard.tables.get(&table)?.get(key)?;
        let expired_at = entry.expires.filter(|&t| t <= now)?;
        let record = entry.record.as_ref()?;
        (now < expired_at + window).then(|| record.clone())
    }

    fn lookup(&self, schema: &'static Schema, key: &Key, now: Instant) -> Option<Record> {
        match self.find(schema, key, now) {
            Lookup::Hit(r) => Some(r),
            Lookup::Miss(_) => None,
        }
    }

    /// Applies `f` to the live row with `key` (or `None`) under the shard's
    /// write lock; `f` returns the new row (or `None` to remove it) and a
    /// result.
    fn modify<R>(
        &self, schema: &'static Schema, key: Key,
        f: impl FnOnce(&Key, Option<Current<'_>>) -> Result<(Change, R)>,
    ) -> Result<R> {
        let table = table_id(schema);
        let i = self.shard_of(table, &key);
        let now = Instant::now();
        let mut guard = write(&self.shards[i]);
        let shard = &mut *guard;
        let rows = shard.tables.entry(table).or_default();
        let raw = rows.get(&key);
        if let Some(dead) = raw.filter(|e| !self.live(e, now)) {
            // Expired: forgotten as if evicted.
            self.forgotten[i].fetch_max(dead.cas + 1, Ordering::Relaxed);
        }
        let current = raw.filter(|e| self.live(e, now));
        let (change, out) = f(
            &key,
            current.map(|e| Current {
                record: e.record.as_ref(),
                cas: e.cas,
            }),
        )?;
        let tick = self.clocks[i].fetch_add(1, Ordering::Relaxed);
        match change {
            Change::Keep => {}
            Change::Remove => {
                if rows.remove(&key).is_some() {
                    shard.len -= 1;
                }
            }
            Change::Put(record, ttl) => {
                let entry = Entry {
                    record,
                    cas: tick,
                    expires: ttl.map(|t| now + t),
                    touched: AtomicU64::new(tick),
                };
                match rows.entry(key) {
                    MapEntry::Occupied(mut o) => {
                        o.insert(entry);
                    }
                    MapEntry::Vacant(v) => {
                        v.insert(entry);
                        shard.len += 1;
                    }
                }
                if let Some(cap) = self.shard_capacity {
                    while shard.len > cap {
                        let evicted = evict_one(shard, now);
                        self.forgotten[i].fetch_max(evicted.forgotten, Ordering::Relaxed);
                        if !evicted.dropped {
                            break;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// [`modify`](Self::modify) on the row of `record`, which is checked
    /// first, as every write of a whole row is.
    fn modify_row<R>(
        &self, schema: &'static Schema, record: &Record,
        f: impl FnOnce(&Key, Option<Current<'_>>) -> Result<(Change, R)>,
    ) -> Result<R> {
        check_record(schema, record)?;
        self.modify(schema, key_of(schema, record)?, f)
    }
}

enum Change {
    Keep,
    Remove,
    /// A row (`Some`) or a marker (`None`), with its time to live.
    Put(Option<Record>, Option<Duration>),
}

/// The live entry a modification sees.
struct Current<'a> {
    record: Option<&'a Record>,
    cas: u64,
}

impl MemoryStore {
    fn put(&self, record: &Record) -> Change {
        Change::Put(Some(record.clone()), self.ttl)
    }

    /// Rows a plan puts in this store as a cache always expire: with the
    /// configured TTL, or [`CACHE_TTL`] when none is set.
    fn cached(&self, record: &Record) -> Change {
        Change::Put(Some(record.clone()), Some(self.ttl.unwrap_or(CACHE_TTL)))
    }

    /// Markers live long enough to outlast any fill that raced them, and no
    /// longer than rows do.
    fn marker_ttl(&self) -> Duration {
        self.ttl.map_or(MARKER_TTL, |t| t.min(MARKER_TTL))
    }
}

/// Time to live of rows filled into a memory cache that has no TTL of its
/// own: a safety net, so a row whose invalidation was lost cannot be served
/// forever.
pub const CACHE_TTL: Duration = Duration::from_secs(300);

/// The bit of a [`FillToken::Cas`] that says "absent at this clock
/// reading" (the rest), not "this marker".
const ABSENT: u64 = 1 << 63;

/// How long an invalidation marker lives.
const MARKER_TTL: Duration = Duration::from_secs(30);

fn table_id(schema: &'static Schema) -> TableId {
    (schema.table(), schema.fingerprint())
}

fn read(lock: &RwLock<Shard>) -> std::sync::RwLockReadGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a shard half-updated (every
    // change is one map operation), so a poisoned lock is safe to keep using.
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write(lock: &RwLock<Shard>) -> std::sync::RwLockWriteGuard<'_, Shard> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// `f` on each of `keys`, checked first, at one clock reading.
fn each_key<T>(
    schema: &'static Schema, keys: &[Key], f: impl Fn(&Key, Instant) -> T,
) -> Result<Vec<T>> {
    let now = Instant::now();
    keys.iter()
        .map(|k| {
            check_key(schema, k)?;
            Ok(f(k, now))
        })
        .collect()
}
