//! The plan's cache levels as its fallback sees them: what replay
//! invalidates once the primary holds a key's state.

use std::sync::{Arc, RwLock};

use super::Level;
use super::key_mutex::KeyMutexes;
use crate::breaker::{BreakerState, CircuitBreaker};
use crate::cache::Cache;
use crate::fallback::CacheInvalidation;
use crate::retry::Retries;
use crate::schema::Schema;
use crate::store::BoxFuture;
use crate::value::Key;

/// One level: its cache and its breaker.
type Entry = (Arc<dyn Cache>, Arc<CircuitBreaker>);

/// A plan's cache levels, front first, with their breakers (shared with
/// the plan, so a level added after `build` is seen too), its retry queue,
/// and the per-key mutexes its journaled writes hold until their cache
/// puts are done.
#[derive(Clone)]
pub(super) struct Levels {
    levels: Arc<RwLock<Vec<Entry>>>,
    retries: Retries,
    journaled: Arc<KeyMutexes>,
}

/// Keys one task invalidates: a large replayed batch is spread over
/// several tasks, so a remote cache's round trips overlap.
const PER_TASK: usize = 256;

impl CacheInvalidation for Levels {
    fn invalidate<'a>(&'a self, schema: &'static Schema, keys: &'a [Key]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if keys.len() <= PER_TASK {
                return self.invalidate_keys(schema, keys).await;
            }
            let mut tasks = tokio::task::JoinSet::new();
            for chunk in keys.chunks(PER_TASK) {
                let (levels, chunk) = (self.clone(), chunk.to_vec());
                tasks.spawn(async move { levels.invalidate_keys(schema, &chunk).await });
            }
            while tasks.join_next().await.is_some() {}
        })
    }
}

impl Levels {
    pub fn of(levels: &[Level], retries: &Retries, journaled: &Arc<KeyMutexes>) -> Self {
        Levels {
            levels: Arc::new(RwLock::new(
                levels
                    .iter()
                    .map(|l| (l.cache.clone(), l.breaker.clone()))
                    .collect(),
            )),
            retries: retries.clone(),
            journaled: journaled.clone(),
        }
    }

    /// Adds a level behind the others.
    pub fn push(&self, level: &Level) {
        self.levels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((level.cache.clone(), level.breaker.clone()));
    }

    /// Invalidates each key in every level, nearest the primary first (as
    /// every write's caches follow), holding the key's mutex: a journaled
    /// write of the key still putting its row finishes first, so its put
    /// cannot land after this invalidation.
    async fn invalidate_keys(&self, schema: &'static Schema, keys: &[Key]) {
        let levels = self
            .levels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for key in keys {
            let _key = self.journaled.lock(schema, key).await;
            for i in (0..levels.len()).rev() {
                self.invalidate_in(&levels, i, schema, key).await;
            }
        }
    }

    /// Invalidates `key` in level `i`, through its breaker (a dead level
    /// fails fast once it is open); a failure queues the level and those
    /// in front of it for retries.
    async fn invalidate_in(&self, levels: &[Entry], i: usize, schema: &'static Schema, key: &Key) {
        let (cache, breaker) = &levels[i];
        if let Err(e) = breaker.call(cache.invalidate(schema, key)).await {
            if breaker.state() != BreakerState::Closed {
                tracing::debug!(target: "octopus::plan", cache = cache.name(), table = schema.table(), %key, error = %e, "cache level's breaker not closed: invalidation after replay queued for retries");
            } else {
                tracing::warn!(target: "octopus::plan", cache = cache.name(), table = schema.table(), %key, error = %e, "cache invalidation after replay failed; retrying in the background");
            }
            let chain = levels[..=i].iter().rev().map(|(c, _)| c.clone()).collect();
            self.retries.push(chain, schema, key.clone());
        }
    }
}
