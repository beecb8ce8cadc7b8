//! The plan's cache levels as its fallback sees them: what replay
//! invalidates once the primary holds a key's state.

use std::sync::Arc;

use crate::cache::Cache;
use crate::fallback::CacheInvalidation;
use crate::retry::Retries;
use crate::schema::Schema;
use crate::store::BoxFuture;
use crate::value::Key;

/// A plan's cache levels, front first, and its retry queue.
pub(super) struct Levels {
    pub caches: Vec<Arc<dyn Cache>>,
    pub retries: Retries,
}

impl CacheInvalidation for Levels {
    fn invalidate<'a>(&'a self, schema: &'static Schema, keys: &'a [Key]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Nearest the primary first, as every write's caches follow.
            for (i, cache) in self.caches.iter().enumerate().rev() {
                for key in keys {
                    if let Err(e) = cache.invalidate(schema, key).await {
                        tracing::warn!(target: "octopus::plan", cache = cache.name(), table = schema.table(), %key, error = %e, "cache invalidation after replay failed; retrying in the background");
                        let chain = self.caches[..=i].iter().rev().cloned().collect();
                        self.retries.push(chain, schema, key.clone());
                    }
                }
            }
        })
    }
}
