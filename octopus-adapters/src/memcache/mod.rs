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

mod codec;
mod router;

use std::sync::Arc;
use std::time::Duration;

use memcache::exp::{AsyncMetaClient, Get, GetStatus, Meta, MutationStatus, Ttl};
use octopus::{
    BoxFuture, Cache, Error, FillToken, Key, Lookup, Record, Result, Schema, Store, check_key,
    check_record, key_of, version_of,
};

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

/// Settings of a [`MemcacheStore`], from a URL or built in code.
#[derive(Debug, Clone)]
pub struct MemcacheOptions {
    servers: Vec<String>,
    namespace: String,
    ttl: Duration,
    timeout: Duration,
    connect_timeout: Duration,
    max_item_bytes: usize,
}

impl MemcacheOptions {
    /// Options for `servers` (`host:port` each) with defaults: TTL 300 s,
    /// operation timeout 500 ms, connect timeout 500 ms, 1 MiB items.
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        MemcacheOptions {
            servers: servers.into_iter().map(Into::into).collect(),
            namespace: "octopus".into(),
            ttl: Duration::from_secs(300),
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            max_item_bytes: DEFAULT_ITEM_LIMIT,
        }
    }

    /// Parses `memcache://host:port[,host:port...]` with optional
    /// `namespace`, `ttl_secs`, `timeout_ms`, `connect_timeout_ms` and
    /// `max_item_bytes` query parameters. Unknown parameters, and a user or
    /// password (the meta protocol has no login), are errors naming them.
    pub fn from_url(url: &str) -> Result<Self> {
        let url = crate::url::StoreUrl::parse(url)?;
        if url.scheme() != "memcache" || !url.has_authority() {
            return Err(url.error("a memcache URL starts with memcache://"));
        }
        url.refuse_userinfo("memcached's meta protocol has no login")?;
        let servers: Vec<String> = url
            .location()
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if servers.is_empty() {
            return Err(url.error("no server in the URL (memcache://host:port)"));
        }
        for s in &servers {
            let port_ok = s
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(url.error(format!("server {s:?} is not host:port")));
            }
        }
        let mut options = MemcacheOptions::new(servers);
        for param in url.params() {
            match param.name.as_str() {
                "ttl_secs" => options.ttl = Duration::from_secs(url.positive(param)?),
                "timeout_ms" => options.timeout = Duration::from_millis(url.positive(param)?),
                "connect_timeout_ms" => {
                    options.connect_timeout = Duration::from_millis(url.positive(param)?)
                }
                "max_item_bytes" => {
                    options.max_item_bytes =
                        usize::try_from(url.positive(param)?).unwrap_or(usize::MAX)
                }
                "namespace" => options = options.namespace(&param.value)?,
                _ => {
                    return Err(url.unknown(
                        param,
                        "namespace, ttl_secs, timeout_ms, connect_timeout_ms, max_item_bytes",
                    ));
                }
            }
        }
        Ok(options)
    }

    /// The first part of every key (default `octopus`), so several
    /// applications or environments can share servers: 1 to 64 ASCII
    /// letters, digits, `_` or `-`.
    pub fn namespace(mut self, namespace: &str) -> Result<Self> {
        let ok = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(Error::Config {
                key: "namespace".into(),
                reason: format!("{namespace:?} must be 1 to 64 ASCII letters, digits, `_` or `-`"),
            });
        }
        self.namespace = namespace.to_owned();
        Ok(self)
    }

    /// Time to live of every item written (at least one second).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Deadline of one exchange with a server.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Deadline for dialing a server.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// The server's item size limit (memcached's `-I`).
    pub fn max_item_bytes(mut self, n: usize) -> Self {
        self.max_item_bytes = n;
        self
    }
}

/// A [`Store`] on one or more memcached servers. Cheap to clone.
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
            }),
        })
    }

    /// The memcached key a row of `schema` with `key` is stored under.
    pub fn cache_key(&self, schema: &'static Schema, key: &Key) -> String {
        codec::cache_key(&self.inner.namespace, schema, key)
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
        check_key(schema, key)?;
        let k = codec::cache_key(&self.inner.namespace, schema, key);
        let got = self
            .inner
            .client
            .run(Get::new(&k).meta(Meta::NONE.cas()))
            .await
            .map_err(|e| self.fail(e))?;
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
        let (_, bytes) = self.encoded(schema, record)?;
        let k = codec::cache_key(&self.inner.namespace, schema, &key_of(schema, record)?);
        let out = self
            .inner
            .client
            .set(&k, &bytes)
            .ttl(self.inner.ttl)
            .compare_cas(cas)
            .send()
            .await
            .map_err(|e| self.fail(e))?;
        Ok(out.status == MutationStatus::Applied)
    }

    /// Stores `record` only if no item exists for its key (memcached `add`);
    /// returns whether it was stored.
    pub async fn add(&self, schema: &'static Schema, record: &Record) -> Result<bool> {
        let (key, bytes) = self.encoded(schema, record)?;
        let k = codec::cache_key(&self.inner.namespace, schema, &key);
        let out = self
            .inner
            .client
            .set(&k, &bytes)
            .ttl(self.inner.ttl)
            .add()
            .send()
            .await
            .map_err(|e| self.fail(e))?;
        Ok(out.status == MutationStatus::Applied)
    }
}

impl MemcacheStore {
    fn lookup_result(
        &self, schema: &'static Schema, key: &Key, got: memcache::exp::GetResult,
    ) -> Lookup {
        match (got.status, got.value, got.item.cas) {
            (GetStatus::Hit, Some(v), cas) if v.as_slice() != MARKER => {
                match self.decoded(schema, key, &v) {
                    Some(record) => Lookup::Hit(record),
                    // Unreadable bytes: a fill may replace them, by CAS.
                    None => Lookup::Miss(cas.map_or(FillToken::Absent, FillToken::Cas)),
                }
            }
            (GetStatus::Hit, _, Some(cas)) => Lookup::Miss(FillToken::Cas(cas)),
            _ => Lookup::Miss(FillToken::Absent),
        }
    }
}

impl Cache for MemcacheStore {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn lookup<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Lookup>> {
        Box::pin(async move {
            check_key(schema, key)?;
            let k = codec::cache_key(&self.inner.namespace, schema, key);
            let got = self
                .inner
                .client
                .run(Get::new(&k).meta(Meta::NONE.cas()))
                .await
                .map_err(|e| self.fail(e))?;
            Ok(self.lookup_result(schema, key, got))
        })
    }

    fn lookup_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Lookup>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            for k in keys {
                check_key(schema, k)?;
            }
            let gets = keys.iter().map(|k| {
                Get::new(codec::cache_key(&self.inner.namespace, schema, k)).meta(Meta::NONE.cas())
            });
            let results = self
                .inner
                .client
                .run_many(gets)
                .await
                .map_err(|e| self.fail(e))?;
            keys.iter()
                .zip(results)
                .map(|(key, got)| {
                    Ok(self.lookup_result(schema, key, got.map_err(|e| self.fail(e))?))
                })
                .collect()
        })
    }

    fn fill<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, token: FillToken,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            match token {
                FillToken::Absent => self.add(schema, record).await,
                FillToken::Cas(cas) => self.set_if_cas(schema, record, cas).await,
            }
        })
    }

    fn put<'a>(&'a self, schema: &'static Schema, record: &'a Record) -> BoxFuture<'a, Result<()>> {
        Store::upsert(self, schema, record)
    }

    fn invalidate<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            check_key(schema, key)?;
            let k = codec::cache_key(&self.inner.namespace, schema, key);
            self.inner
                .client
                .set(&k, MARKER)
                .ttl(self.inner.marker_ttl)
                .send()
                .await
                .map_err(|e| self.fail(e))?;
            Ok(())
        })
    }
}

impl Store for MemcacheStore {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn ensure_schema<'a>(&'a self, _schema: &'static Schema) -> BoxFuture<'a, Result<()>> {
        // Nothing to create: the fingerprint in every value is the schema.
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async move {
            check_key(schema, key)?;
            let k = codec::cache_key(&self.inner.namespace, schema, key);
            let got = self
                .inner
                .client
                .get(&k)
                .send()
                .await
                .map_err(|e| self.fail(e))?;
            Ok(match (got.status, got.value) {
                (GetStatus::Hit, Some(v)) => self.decoded(schema, key, &v),
                _ => None,
            })
        })
    }

    fn get_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            for k in keys {
                check_key(schema, k)?;
            }
            // One pipelined batch per server, the servers in parallel.
            let results = self
                .inner
                .client
                .run_many(
                    keys.iter()
                        .map(|k| Get::new(codec::cache_key(&self.inner.namespace, schema, k))),
                )
                .await
                .map_err(|e| self.fail(e))?;
            keys.iter()
                .zip(results)
                .map(|(key, got)| {
                    let got = got.map_err(|e| self.fail(e))?;
                    Ok(match (got.status, got.value) {
                        (GetStatus::Hit, Some(v)) => self.decoded(schema, key, &v),
                        _ => None,
                    })
                })
                .collect()
        })
    }

    fn insert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.add(schema, record).await? {
                Ok(())
            } else {
                Err(Error::AlreadyExists {
                    table: schema.table(),
                    key: key_of(schema, record)?.to_string(),
                })
            }
        })
    }

    fn upsert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (key, bytes) = self.encoded(schema, record)?;
            let k = codec::cache_key(&self.inner.namespace, schema, &key);
            self.inner
                .client
                .set(&k, &bytes)
                .ttl(self.inner.ttl)
                .send()
                .await
                .map_err(|e| self.fail(e))?;
            Ok(())
        })
    }

    fn update<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            check_record(schema, record)?;
            let key = key_of(schema, record)?;
            for _ in 0..CAS_ATTEMPTS {
                let Some((current, cas)) = self.get_with_cas(schema, &key).await? else {
                    return Err(Error::NotFound {
                        table: schema.table(),
                        key: key.to_string(),
                    });
                };
                if let Some(expected) = expected_version {
                    let actual = version_of(schema, &current).unwrap_or(0);
                    if actual != expected {
                        return Err(Error::Conflict {
                            table: schema.table(),
                            key: key.to_string(),
                            expected,
                            actual,
                        });
                    }
                }
                let mut next = record.clone();
                if let Some(i) = schema.created_at_index() {
                    next.values_mut()[i] = current.values()[i].clone();
                }
                if self.set_if_cas(schema, &next, cas).await? {
                    return Ok(());
                }
            }
            Err(Error::unavailable(
                &self.inner.name,
                format!("key {key} kept changing during {CAS_ATTEMPTS} compare-and-set attempts"),
            ))
        })
    }

    fn delete<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            check_key(schema, key)?;
            let k = codec::cache_key(&self.inner.namespace, schema, key);
            let out = self
                .inner
                .client
                .delete(&k)
                .send()
                .await
                .map_err(|e| self.fail(e))?;
            Ok(out.status == MutationStatus::Applied)
        })
    }

    fn scan<'a>(
        &'a self, schema: &'static Schema, _after: Option<&'a Key>, _limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        Box::pin(async move {
            Err(Error::Rejected {
                store: self.inner.name.clone(),
                message: format!(
                    "table `{}`: memcached cannot list keys, so a cache cannot be scanned",
                    schema.table()
                ),
            })
        })
    }
}
