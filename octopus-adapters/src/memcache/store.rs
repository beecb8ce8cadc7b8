//! The memcached store as a [`Store`]: `add` for inserts, a CAS loop for
//! updates, no `scan`.

use memcache::exp::{Delete, Get, GetResult, GetStatus, Meta, MutationStatus};
use octopus::{
    BoxFuture, Error, Key, Record, Result, Schema, Store, check_record, key_of, version_of,
};

use super::{CAS_ATTEMPTS, MemcacheStore};

impl MemcacheStore {
    /// The row a plain `get` found, if any (a marker or stale bytes are
    /// none).
    fn row_of(&self, schema: &'static Schema, key: &Key, got: GetResult) -> Option<Record> {
        match (got.status, got.value) {
            (GetStatus::Hit, Some(v)) => self.decoded(schema, key, &v),
            _ => None,
        }
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
            let got = self.run(Get::new(self.item_key(schema, key)?)).await?;
            Ok(self.row_of(schema, key, got))
        })
    }

    fn get_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        Box::pin(self.get_each(schema, keys, Meta::NONE, move |key, got| {
            self.row_of(schema, key, got)
        }))
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
            self.run(self.set_row(schema, record)?).await?;
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
            let out = self.run(Delete::new(self.item_key(schema, key)?)).await?;
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
