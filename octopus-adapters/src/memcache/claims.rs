//! [`MemcacheClaims`]: a fleet's key claims ([`KeyClaims`]) in memcached.
//!
//! A claim is an item `<namespace>.claims:<table>:<key>` that never
//! expires: the holder's name, then its newest journaled write of the key
//! (a row in the cache's own encoding, a delete's marker, or nothing yet). It is taken with `add`, updated and
//! dropped by CAS, so of two servers claiming one key exactly one holds
//! it. `<namespace>.claims.count` counts the fleet's claims, so servers
//! that hold none learn cheaply whether to look.
//!
//! memcached may evict an item under memory pressure: a claim evicted
//! while its holder's journal still holds the key stops guarding it. Give
//! the claims' memcached room (`-M` makes it refuse stores instead of
//! evicting), or a namespace of their own on a server of their own.

use memcache::exp::{Arithmetic, Delete, Get, GetStatus, Meta, MutationStatus, Set, Ttl};
use octopus::{BoxFuture, Claim, Error, Key, KeyClaims, Record, Result, Schema, check_key};

use super::{MemcacheStore, codec};

/// Attempts at a claim's compare-and-set before it is reported contended.
const ATTEMPTS: usize = 16;
/// A claim's tag byte: the holder's row follows.
const ROW: u8 = 1;
/// A claim's tag byte: the holder's pending write is a delete.
const DELETE: u8 = 0;
/// A claim's tag byte: no write of the holder's is journaled yet.
const NONE_YET: u8 = 2;

/// Key claims in memcached, for `FallbackChain::claims` (see the module
/// docs).
///
/// ```no_run
/// # async fn demo() -> octopus::Result<()> {
/// use std::sync::Arc;
/// use octopus_adapters::memcache::{MemcacheClaims, MemcacheStore};
///
/// let memcached = MemcacheStore::connect("memcache://127.0.0.1:11211").await?;
/// let claims = Arc::new(MemcacheClaims::new(memcached, "app-1")?);
/// # let _ = claims;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemcacheClaims {
    store: MemcacheStore,
    namespace: String,
    owner: String,
}

impl std::fmt::Debug for MemcacheClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcacheClaims")
            .field("namespace", &self.namespace)
            .field("owner", &self.owner)
            .finish()
    }
}

impl MemcacheClaims {
    /// Claims in `store`'s servers, under its namespace, held as `owner`:
    /// a name unique in the fleet and stable across this server's
    /// restarts (its host and journal directory, say).
    pub fn new(store: MemcacheStore, owner: impl Into<String>) -> Result<Self> {
        let owner = owner.into();
        if owner.is_empty() || owner.len() > u16::MAX as usize {
            return Err(Error::invalid(format!(
                "a claim owner's name must have 1 to {} bytes, not {}",
                u16::MAX,
                owner.len()
            )));
        }
        let namespace = format!("{}.claims", store.inner.namespace);
        Ok(MemcacheClaims {
            store,
            namespace,
            owner,
        })
    }

    fn item(&self, schema: &'static Schema, key: &Key) -> Result<String> {
        check_key(schema, key)?;
        Ok(codec::cache_key(&self.namespace, schema, key))
    }

    fn count_key(&self) -> String {
        format!("{}.count", self.namespace)
    }

    fn encode(
        &self, schema: &'static Schema, key: &Key, write: Option<Option<&Record>>,
    ) -> Vec<u8> {
        let mut out = (self.owner.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(self.owner.as_bytes());
        match write {
            Some(Some(row)) => {
                out.push(ROW);
                out.extend(codec::encode(schema, key, row));
            }
            Some(None) => out.push(DELETE),
            None => out.push(NONE_YET),
        }
        out
    }

    fn decode(&self, schema: &'static Schema, key: &Key, bytes: &[u8]) -> Result<Claim> {
        let corrupt = |why: &str| {
            Error::unavailable(
                &self.store.inner.name,
                format!(
                    "table `{}`, key {key}: the claim item is unreadable ({why})",
                    schema.table()
                ),
            )
        };
        let (len, rest) = bytes.split_at_checked(2).ok_or_else(|| corrupt("short"))?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let (owner, rest) = rest.split_at_checked(len).ok_or_else(|| corrupt("short"))?;
        let owner = String::from_utf8(owner.to_vec()).map_err(|_| corrupt("owner not UTF-8"))?;
        let write = match rest.split_first() {
            Some((&NONE_YET, [])) => None,
            Some((&DELETE, [])) => Some(None),
            Some((&ROW, row)) => {
                Some(Some(codec::decode(schema, key, row).map_err(|_| {
                    corrupt("its row is of another shape of the model")
                })?))
            }
            _ => return Err(corrupt("unknown tag")),
        };
        Ok(Claim { owner, write })
    }

    /// The claim item of `key`, decoded, and its CAS token.
    async fn read(&self, schema: &'static Schema, key: &Key) -> Result<Option<(Claim, u64)>> {
        let got = self
            .store
            .run(Get::new(self.item(schema, key)?).meta(Meta::NONE.cas()))
            .await?;
        if got.status != GetStatus::Hit {
            return Ok(None);
        }
        let (Some(value), Some(cas)) = (got.value, got.item.cas) else {
            return Ok(None);
        };
        Ok(Some((self.decode(schema, key, &value)?, cas)))
    }

    fn contended(&self, schema: &'static Schema, key: &Key) -> Error {
        Error::unavailable(
            &self.store.inner.name,
            format!(
                "table `{}`, key {key}: the claim changed under each of {ATTEMPTS} attempts",
                schema.table()
            ),
        )
    }
}

impl KeyClaims for MemcacheClaims {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn claim<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Claim>>> {
        Box::pin(async move {
            let item = self.item(schema, key)?;
            let value = self.encode(schema, key, None);
            for _ in 0..ATTEMPTS {
                match self.read(schema, key).await? {
                    Some((claim, _)) if claim.owner != self.owner => return Ok(Some(claim)),
                    Some(_) => return Ok(None),
                    None => {
                        let set = Set::new(&item, &value).ttl(Ttl::NEVER).add();
                        let out = self.store.run(set).await?;
                        if out.status == MutationStatus::Applied {
                            // Counted after it is taken: a count is an
                            // upper bound once the claim is dropped.
                            // upper bound once the claim is dropped; a
                            // count that failed leaves the claim taken.
                            let count = Arithmetic::new(self.count_key()).initial(1, 0);
                            if let Err(e) = self.store.run(count).await {
                                tracing::warn!(table = schema.table(), %key, error = %e, "a claim taken but not counted");
                            }
                            return Ok(None);
                        }
                    }
                }
            }
            Err(self.contended(schema, key))
        })
    }

    fn record<'a>(
        &'a self, schema: &'static Schema, key: &'a Key, row: Option<&'a Record>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let item = self.item(schema, key)?;
            let value = self.encode(schema, key, Some(row));
            for _ in 0..ATTEMPTS {
                let cas = match self.read(schema, key).await? {
                    Some((claim, cas)) if claim.owner == self.owner => cas,
                    other => {
                        return Err(Error::unavailable(
                            &self.store.inner.name,
                            format!(
                                "table `{}`, key {key}: the claim is not this server's ({})",
                                schema.table(),
                                other
                                    .map_or("none".to_owned(), |(c, _)| format!("`{}`'s", c.owner))
                            ),
                        ));
                    }
                };
                let set = Set::new(&item, &value).ttl(Ttl::NEVER).compare_cas(cas);
                if self.store.run(set).await?.status == MutationStatus::Applied {
                    return Ok(());
                }
            }
            Err(self.contended(schema, key))
        })
    }

    fn holder<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Claim>>> {
        Box::pin(async move { Ok(self.read(schema, key).await?.map(|(claim, _)| claim)) })
    }

    fn release<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for _ in 0..ATTEMPTS {
                let cas = match self.read(schema, key).await? {
                    Some((claim, cas)) if claim.owner == self.owner => cas,
                    _ => return Ok(()),
                };
                let out = self
                    .store
                    .run(Delete::new(self.item(schema, key)?).compare_cas(cas))
                    .await?;
                if out.status == MutationStatus::Applied {
                    let count = Arithmetic::new(self.count_key()).decrement();
                    self.store.run(count).await?;
                    return Ok(());
                }
            }
            Err(self.contended(schema, key))
        })
    }

    fn outstanding(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let got = self.store.run(Get::new(self.count_key())).await?;
            if got.status != GetStatus::Hit {
                return Ok(0);
            }
            let text = got.value.unwrap_or_default();
            std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| {
                    Error::unavailable(
                        &self.store.inner.name,
                        format!("the claim count `{}` is not a number", self.count_key()),
                    )
                })
        })
    }
}
