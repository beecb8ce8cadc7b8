//! The memcached store ([`MemcacheStore`]), a cache in front of a primary.
//!
//! # Client, and why
//!
//! Measured on this project's machines with 100-byte values: the classic
//! `memcache::Client` (binary protocol, a pool of one with a health round
//! trip on every checkout, no connect timeout, blocking) takes ~60 µs per get
//! and would need a hop to a blocking thread; the async meta-protocol client
//! `memcache::exp::AsyncMetaClient` takes ~10 µs and reaches ~220k gets/s with
//! 64 tasks, never blocking an executor thread. This store uses the async
//! client (the crate's `exp` module, so the dependency is pinned to `~0.21`)
//! and adds what it lacks: placement that is stable across builds
//! ([`StableRendezvous`]), keys for any text, schema fingerprints, and
//! Octopus' error classes.
//!
//! # Layout
//!
//! Keys are `octopus:<table>:<key>` (`octopus` is the default
//! namespace; see [`MemcacheOptions::namespace`]); keys memcached cannot hold
//! (spaces, control characters, non-ASCII, over 250 bytes) are hashed
//! deterministically, and every value carries its exact key, so two keys
//! never read each other's row. Values are a compact binary encoding of the
//! record carrying the schema fingerprint: bytes written under another shape
//! of the model are a miss, never decoded, that a fill may replace (one key
//! per row whatever the shape: servers of two versions of a model, during a
//! rolling deploy, invalidate each other's cached rows). Every write has the store's TTL.
//! A value larger than the item limit (`max_item_bytes`, default 1 MiB minus
//! room for the key and header) is refused with [`Error::Invalid`] for that
//! write only.
//!
//! # Contract
//!
//! memcached holds what a plan puts in it and may drop anything at any time.
//! `insert` uses `add`, `update` is a CAS loop (conditional on the version
//! like every store), `delete` reports whether the key was there. memcached
//! cannot list keys, so `scan` is refused with [`Error::Rejected`]: it is
//! for migrating and replaying primaries, never caches.

mod cache;
mod claims;
mod codec;
mod options;
mod router;
mod store;

use std::sync::Arc;
use std::time::Duration;

use memcache::exp::{
    AsyncMetaClient, Get, GetResult, GetStatus, Meta, MutationStatus, Operation, Set, Ttl,
};
use octopus::{Error, Key, Record, Result, Schema, check_key, check_record, key_of};

pub use claims::MemcacheClaims;
pub use options::MemcacheOptions;
pub use router::StableRendezvous;

/// memcached's default item size limit (`-I 1m`).
const DEFAULT_ITEM_LIMIT: usize = 1024 * 1024;
/// Room left in an item for the key and memcached's own header.
const ITEM_OVERHEAD: usize = 512;
/// The value of an invalidation marker (a record's encoding never starts
/// with 0).
const MARKER: &[u8] = &[0];
/// Longest life of an invalidation marker: far longer than any fill that
/// could race it.
const MARKER_TTL: Duration = Duration::from_secs(30);

/// How many times `update` retries when another writer changes the item
/// between its read and its compare-and-set.
const CAS_ATTEMPTS: usize = 8;

/// A [`Store`](octopus::Store) on one or more memcached servers. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> octopus::Result<()> {
/// use octopus_adapters::memcache::MemcacheStore;
/// let cache = MemcacheStore::connect("memcache://127.0.0.1:11211,127.0.0.1:11212?ttl_secs=60").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemcacheStore {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    namespace: String,
    client: AsyncMetaClient,
    ttl: Ttl,
    marker_ttl: Ttl,
    max_value: usize,
    /// The deadline of one exchange with a server.
    deadline: Duration,
}

impl std::fmt::Debug for MemcacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::debug_store(f, "MemcacheStore", &self.inner.name)
    }
}

impl MemcacheStore {
    /// A store for `url` (see [`MemcacheOptions::from_url`]). Resolves the
    /// addresses but does not dial: a server that is down surfaces as
    /// [`Error::Unavailable`] at the first call.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::with_options(MemcacheOptions::from_url(url)?).await
    }

    /// A store with `options`.
    pub async fn with_options(options: MemcacheOptions) -> Result<Self> {
        let name = format!("memcache://{}", options.servers.join(","));
        let ttl_secs = u32::try_from(options.ttl.as_secs().max(1)).unwrap_or(u32::MAX);
        let client = AsyncMetaClient::builder()
            .router(StableRendezvous)
            .io_timeout(Some(options.timeout))
            .connect_timeout(Some(options.connect_timeout))
            .connect_multiple_async(options.servers.iter().map(String::as_str))
            .await
            .map_err(|e| Error::Config {
                key: name.clone(),
                reason: e.to_string(),
            })?;
        Ok(MemcacheStore {
            inner: Arc::new(Inner {
                name,
                namespace: options.namespace.clone(),
                client,
                ttl: Ttl::secs(ttl_secs),
                marker_ttl: Ttl::secs(ttl_secs.min(MARKER_TTL.as_secs() as u32)),
                max_value: options.max_item_bytes.saturating_sub(ITEM_OVERHEAD),
                deadline: options.timeout,
            }),
        })
    }

    /// The memcached key a row of `schema` with `key` is stored under.
    pub fn cache_key(&self, schema: &'static Schema, key: &Key) -> String {
        codec::cache_key(&self.inner.namespace, schema, key)
    }

    /// Runs one memcached operation, a failure classified as this store's.
    async fn run<O: Operation>(&self, op: O) -> Result<O::Output> {
        self.inner.client.run(op).await.map_err(|e| self.fail(e))
    }

    /// `key`, checked against the schema, as this store's memcached key.
    fn item_key(&self, schema: &'static Schema, key: &Key) -> Result<String> {
        check_key(schema, key)?;
        Ok(codec::cache_key(&self.inner.namespace, schema, key))
    }

    /// `keys`, checked, in one pipelined batch per server, the servers in
    /// parallel, each with the metadata `meta`; `answer` turns each result
    /// into what the caller returns.
    async fn get_each<T>(
        &self, schema: &'static Schema, keys: &[Key], meta: Meta,
        answer: impl Fn(&Key, GetResult) -> T,
    ) -> Result<Vec<T>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let gets = keys
            .iter()
            .map(|k| Ok(Get::new(self.item_key(schema, k)?).meta(meta)))
            .collect::<Result<Vec<_>>>()?;
        let results = self
            .inner
            .client
            .run_many(gets)
            .await
            .map_err(|e| self.fail(e))?;
        keys.iter()
            .zip(results)
            .map(|(key, got)| Ok(answer(key, got.map_err(|e| self.fail(e))?)))
            .collect()
    }

    /// A `set` of `record`, checked and encoded, with the store's TTL.
    fn set_row(&self, schema: &'static Schema, record: &Record) -> Result<Set> {
        let (key, bytes) = self.encoded(schema, record)?;
        let k = codec::cache_key(&self.inner.namespace, schema, &key);
        Ok(Set::new(k, bytes).ttl(self.inner.ttl))
    }

    fn fail(&self, e: memcache::exp::Error) -> Error {
        use memcache::exp::Error as E;
        match e {
            E::Io(_) | E::Timeout { .. } | E::Ambiguous { .. } | E::Protocol(_) => {
                Error::unavailable(&self.inner.name, e)
            }
            E::Server(ref m) if m.contains("out of memory") || m.contains("busy") => {
                Error::unavailable(&self.inner.name, e)
            }
            other => Error::Rejected {
                store: self.inner.name.clone(),
                message: other.to_string(),
            },
        }
    }

    fn encoded(&self, schema: &'static Schema, record: &Record) -> Result<(Key, Vec<u8>)> {
        check_record(schema, record)?;
        let key = key_of(schema, record)?;
        let bytes = codec::encode(schema, &key, record);
        if bytes.len() > self.inner.max_value {
            return Err(Error::invalid(format!(
                "table `{}`, key {key}: the cached value is {} bytes, over memcached's item limit of {} bytes",
                schema.table(),
                bytes.len(),
                self.inner.max_value
            )));
        }
        Ok((key, bytes))
    }

    fn decoded(&self, schema: &'static Schema, key: &Key, bytes: &[u8]) -> Option<Record> {
        match codec::decode(schema, key, bytes) {
            Ok(r) => Some(r),
            Err(codec::Mismatch::Stale) => None,
            Err(codec::Mismatch::Corrupt(why)) => {
                tracing::warn!(store = %self.inner.name, table = schema.table(), %key, why, "undecodable cached value; treated as a miss");
                None
            }
        }
    }

    /// The row with `key` and its CAS token, for fills and updates that must
    /// not overwrite a concurrent change.
    pub async fn get_with_cas(
        &self, schema: &'static Schema, key: &Key,
    ) -> Result<Option<(Record, u64)>> {
        let got = self
            .run(Get::new(self.item_key(schema, key)?).meta(Meta::NONE.cas()))
            .await?;
        if got.status != GetStatus::Hit {
            return Ok(None);
        }
        let (Some(value), Some(cas)) = (got.value, got.item.cas) else {
            return Ok(None);
        };
        Ok(self.decoded(schema, key, &value).map(|r| (r, cas)))
    }

    /// Stores `record` only if the item still has CAS token `cas`; returns
    /// whether it was stored.
    pub async fn set_if_cas(
        &self, schema: &'static Schema, record: &Record, cas: u64,
    ) -> Result<bool> {
        let out = self
            .run(self.set_row(schema, record)?.compare_cas(cas))
            .await?;
        Ok(out.status == MutationStatus::Applied)
    }

    /// Stores `record` only if no item exists for its key (memcached `add`);
    /// returns whether it was stored.
    pub async fn add(&self, schema: &'static Schema, record: &Record) -> Result<bool> {
        let out = self.run(self.set_row(schema, record)?.add()).await?;
        Ok(out.status == MutationStatus::Applied)
    }
}
