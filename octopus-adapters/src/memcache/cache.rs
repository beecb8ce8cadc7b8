//! The memcached store as a [`Cache`]: lookups that tell a marker from a
//! miss, fills by `add` or CAS, invalidation markers.

use memcache::exp::{Get, GetStatus, Meta, Set};
use octopus::{BoxFuture, Cache, FillToken, Key, Lookup, Record, Result, Schema, Store};

use super::{MARKER, MemcacheStore};

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
            let got = self
                .run(Get::new(self.item_key(schema, key)?).meta(Meta::NONE.cas()))
                .await?;
            Ok(self.lookup_result(schema, key, got))
        })
    }

    fn lookup_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Lookup>>> {
        Box::pin(
            self.get_each(schema, keys, Meta::NONE.cas(), move |key, got| {
                self.lookup_result(schema, key, got)
            }),
        )
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

    fn deadline(&self) -> Option<std::time::Duration> {
        Some(self.inner.deadline)
    }

    fn invalidate<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let marker = Set::new(self.item_key(schema, key)?, MARKER);
            self.run(marker.ttl(self.inner.marker_ttl)).await?;
            Ok(())
        })
    }
}
