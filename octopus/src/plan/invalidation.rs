//! The plan's cache levels as its fallback sees them: what replay
//! invalidates once the primary holds a key's state.

use std::sync::Arc;

use super::Level;
use crate::breaker::CircuitBreaker;
use crate::cache::Cache;
use crate::fallback::CacheInvalidation;
use crate::retry::Retries;
use crate::schema::Schema;
use crate::store::BoxFuture;
use crate::value::Key;

/// A plan's cache levels, front first, with their breakers, and its retry
/// queue.
pub(super) struct Levels {
    caches: Vec<Arc<dyn Cache>>,
    breakers: Vec<Arc<CircuitBreaker>>,
    retries: Retries,
}

/// Keys one task invalidates in a level, at least: a large replayed batch
/// is spread over several tasks, so a remote cache's round trips overlap.
const PER_TASK: usize = 256;

impl CacheInvalidation for Levels {
    fn invalidate<'a>(&'a self, schema: &'static Schema, keys: &'a [Key]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Nearest the primary first, as every write's caches follow.
            for i in (0..self.caches.len()).rev() {
                if keys.len() <= PER_TASK {
                    self.invalidate_level(i, schema, keys).await;
                    continue;
                }
                let mut tasks = tokio::task::JoinSet::new();
                for chunk in keys.chunks(PER_TASK) {
                    let levels = Levels {
                        caches: self.caches.clone(),
                        breakers: self.breakers.clone(),
                        retries: self.retries.clone(),
                    };
                    let chunk = chunk.to_vec();
                    tasks.spawn(async move { levels.invalidate_level(i, schema, &chunk).await });
                }
                // The level is done before the next one in front starts.
                while tasks.join_next().await.is_some() {}
            }
        })
    }
}

impl Levels {
    pub fn of(levels: &[Level], retries: &Retries) -> Self {
        Levels {
            caches: levels.iter().map(|l| l.cache.clone()).collect(),
            breakers: levels.iter().map(|l| l.breaker.clone()).collect(),
            retries: retries.clone(),
        }
    }

    /// Invalidates `keys` in level `i`, through its breaker (a dead level
    /// fails fast once it is open); a failure queues the level and those
    /// in front of it for retries.
    async fn invalidate_level(&self, i: usize, schema: &'static Schema, keys: &[Key]) {
        let (cache, breaker) = (&self.caches[i], &self.breakers[i]);
        for key in keys {
            if let Err(e) = breaker.call(cache.invalidate(schema, key)).await {
                if breaker.state() == crate::breaker::BreakerState::Open {
                    tracing::debug!(target: "octopus::plan", cache = cache.name(), table = schema.table(), %key, error = %e, "cache level's breaker open: invalidation after replay queued for retries");
                } else {
                    tracing::warn!(target: "octopus::plan", cache = cache.name(), table = schema.table(), %key, error = %e, "cache invalidation after replay failed; retrying in the background");
                }
                let chain = self.caches[..=i].iter().rev().cloned().collect();
                self.retries.push(chain, schema, key.clone());
            }
        }
    }
}
