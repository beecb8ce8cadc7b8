//! Plans: where writes go and in which order reads look.

use std::sync::Arc;

use crate::Result;
use crate::schema::Schema;
use crate::store::Store;
use crate::value::{Key, Record};

/// Composes stores for a [`crate::Dao`]: one primary (the source of truth)
/// and any number of caches in front of it.
///
/// - **Reads** try the caches in order, then the primary; a hit fills the
///   caches in front of the level that answered. A cache that fails is
///   skipped (and logged), never fatal while a later level answers.
/// - **Writes** go to the primary; afterwards every cache *invalidates* the
///   key (deletes it), so the next read fills it from the primary. A cache
///   failure never fails a write the primary accepted.
///
/// ```
/// use octopus::{MemoryStore, Plan};
/// let plan = Plan::new(MemoryStore::new()).with_cache(MemoryStore::new());
/// assert_eq!(plan.caches().len(), 1);
/// ```
#[derive(Clone)]
pub struct Plan {
    primary: Arc<dyn Store>,
    caches: Vec<Arc<dyn Store>>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("primary", &self.primary.name())
            .field(
                "caches",
                &self.caches.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Plan {
    /// A plan with `primary` as the source of truth and no caches.
    pub fn new(primary: impl Store) -> Self {
        Plan::from_arc(Arc::new(primary))
    }

    /// A plan over a shared primary.
    pub fn from_arc(primary: Arc<dyn Store>) -> Self {
        Plan {
            primary,
            caches: Vec::new(),
        }
    }

    /// Adds a cache after the ones already added (reads look at it later).
    pub fn with_cache(self, cache: impl Store) -> Self {
        self.with_cache_arc(Arc::new(cache))
    }

    /// Adds a shared cache.
    pub fn with_cache_arc(mut self, cache: Arc<dyn Store>) -> Self {
        self.caches.push(cache);
        self
    }

    /// The primary store.
    pub fn primary(&self) -> &Arc<dyn Store> {
        &self.primary
    }

    /// The caches, in read order.
    pub fn caches(&self) -> &[Arc<dyn Store>] {
        &self.caches
    }

    pub(crate) async fn ensure_schema(&self, schema: &'static Schema) -> Result<()> {
        self.primary.ensure_schema(schema).await?;
        for cache in &self.caches {
            cache.ensure_schema(schema).await?;
        }
        Ok(())
    }

    pub(crate) async fn read(&self, schema: &'static Schema, key: &Key) -> Result<Option<Record>> {
        for (level, cache) in self.caches.iter().enumerate() {
            match cache.get(schema, key).await {
                Ok(Some(record)) => {
                    self.fill(schema, &self.caches[..level], &record).await;
                    return Ok(Some(record));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(store = cache.name(), table = schema.table(), error = %e, "cache read failed; skipping level")
                }
            }
        }
        let found = self.primary.get(schema, key).await?;
        if let Some(record) = &found {
            self.fill(schema, &self.caches, record).await;
        }
        Ok(found)
    }

    pub(crate) async fn read_many(
        &self,
        schema: &'static Schema,
        keys: &[Key],
    ) -> Result<Vec<Option<Record>>> {
        let mut found: Vec<Option<Record>> = vec![None; keys.len()];
        let mut missing: Vec<usize> = (0..keys.len()).collect();
        for (level, cache) in self.caches.iter().enumerate() {
            if missing.is_empty() {
                break;
            }
            let ask: Vec<Key> = missing.iter().map(|&i| keys[i].clone()).collect();
            match cache.get_many(schema, &ask).await {
                Ok(rows) => {
                    let mut still = Vec::new();
                    for (&i, row) in missing.iter().zip(rows) {
                        match row {
                            Some(r) => {
                                self.fill(schema, &self.caches[..level], &r).await;
                                found[i] = Some(r);
                            }
                            None => still.push(i),
                        }
                    }
                    missing = still;
                }
                Err(e) => {
                    tracing::warn!(store = cache.name(), table = schema.table(), error = %e, "cache read failed; skipping level")
                }
            }
        }
        if !missing.is_empty() {
            let ask: Vec<Key> = missing.iter().map(|&i| keys[i].clone()).collect();
            let rows = self.primary.get_many(schema, &ask).await?;
            for (&i, row) in missing.iter().zip(rows) {
                if let Some(r) = &row {
                    self.fill(schema, &self.caches, r).await;
                }
                found[i] = row;
            }
        }
        Ok(found)
    }

    async fn fill(&self, schema: &'static Schema, caches: &[Arc<dyn Store>], record: &Record) {
        for cache in caches {
            if let Err(e) = cache.upsert(schema, record).await {
                tracing::warn!(store = cache.name(), table = schema.table(), error = %e, "cache fill failed");
            }
        }
    }

    /// Drops `key` from every cache after a primary write.
    pub(crate) async fn invalidate(&self, schema: &'static Schema, key: &Key) {
        for cache in &self.caches {
            if let Err(e) = cache.delete(schema, key).await {
                tracing::warn!(store = cache.name(), table = schema.table(), error = %e, "cache invalidation failed");
            }
        }
    }
}
