//! Retries of failed cache invalidations: coalesced per key, one background
//! worker per plan, bounded in size. A retry is kept until its cache
//! answers, however long it is down (a cache that comes back with its data
//! would otherwise serve the rows the lost invalidations were for until
//! their TTL); only a full queue gives new failures up to the TTL.
//!
//! A retry is a chain: the level whose invalidation failed, then every
//! level in front of it, invalidated in that order once the failed one
//! answers. While a deep level still holds the old row, a reader that
//! misses a front level can fill it from there; invalidating the front
//! levels again after the deep one closes that window (the order every
//! write's caches follow, nearest the primary first).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cache::Cache;
use crate::schema::Schema;
use crate::stats::PlanCounters;
use crate::value::Key;

/// Keys waiting for a retry at most; beyond this, new failures are left to
/// the TTL at once (a cache that is down for long cannot grow memory
/// without bound).
const MAX_PENDING: usize = 100_000;
const FIRST_DELAY: Duration = Duration::from_millis(20);
/// The longest wait between two rounds of retries.
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(640);

type RetryKey = (usize, &'static str, u64, Key);

fn id_of(cache: &Arc<dyn Cache>, schema: &'static Schema, key: &Key) -> RetryKey {
    (
        Arc::as_ptr(cache) as *const () as usize,
        schema.table(),
        schema.fingerprint(),
        key.clone(),
    )
}

/// One queued retry, as a round of the worker takes it.
struct Round {
    id: RetryKey,
    chain: Chain,
    schema: &'static Schema,
    key: Key,
    generation: u64,
}
/// Levels to invalidate in order (see the module docs).
type Chain = Vec<Arc<dyn Cache>>;

struct Retry {
    /// The levels still to invalidate, the failed one first.
    chain: Chain,
    schema: &'static Schema,
    key: Key,
    /// Invalidations actually sent for it that failed.
    attempts: u32,
    /// Bumped by every push of the same key and level: a success of an
    /// attempt sent before a later push does not cover that push (the
    /// later write may have committed after the invalidation landed).
    generation: u64,
}

struct Inner {
    pending: Mutex<HashMap<RetryKey, Retry>>,
    /// `pending.len()`, read without the lock.
    queued: AtomicUsize,
    running: AtomicBool,
    counters: Arc<PlanCounters>,
}

#[derive(Clone)]
pub(crate) struct Retries {
    inner: Arc<Inner>,
}

impl Retries {
    pub(crate) fn new(counters: Arc<PlanCounters>) -> Self {
        Retries {
            inner: Arc::new(Inner {
                pending: Mutex::new(HashMap::new()),
                queued: AtomicUsize::new(0),
                running: AtomicBool::new(false),
                counters,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RetryKey, Retry>> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.queued.load(Ordering::SeqCst) == 0
    }

    /// Whether an invalidation of `key` in `cache` is queued.
    pub(crate) fn holds(&self, cache: &Arc<dyn Cache>, schema: &'static Schema, key: &Key) -> bool {
        !self.is_empty() && self.lock().contains_key(&id_of(cache, schema, key))
    }

    /// Queues an invalidation of `key` in `chain[0]`, then in the levels
    /// after it (those in front of it), once per key and failed level,
    /// however many writes failed to invalidate it.
    pub(crate) fn push(&self, chain: Chain, schema: &'static Schema, key: Key) {
        let Some(cache) = chain.first() else {
            return;
        };
        let id = id_of(cache, schema, &key);
        {
            let mut pending = self.lock();
            if pending.len() >= MAX_PENDING && !pending.contains_key(&id) {
                drop(pending);
                self.inner.counters.invalidations_abandoned.incr();
                return;
            }
            pending
                .entry(id)
                .and_modify(|r| {
                    r.generation += 1;
                    r.attempts = 0;
                })
                .or_insert(Retry {
                    chain,
                    schema,
                    key,
                    attempts: 0,
                    generation: 0,
                });
            self.inner.queued.store(pending.len(), Ordering::SeqCst);
        }
        // Marked running only when a worker can start: outside a runtime
        // the key waits for the next push made inside one.
        if let Ok(runtime) = tokio::runtime::Handle::try_current()
            && !self.inner.running.swap(true, Ordering::SeqCst)
        {
            runtime.spawn(self.clone().work());
        }
    }

    async fn work(self) {
        let mut delay = FIRST_DELAY;
        loop {
            tokio::time::sleep(delay).await;
            let round: Vec<Round> = self
                .lock()
                .iter()
                .map(|(id, r)| Round {
                    id: id.clone(),
                    chain: r.chain.clone(),
                    schema: r.schema,
                    key: r.key.clone(),
                    generation: r.generation,
                })
                .collect();
            if round.is_empty() {
                self.inner.running.store(false, Ordering::SeqCst);
                // A push may have come in between the check and the store.
                if self.lock().is_empty() || self.inner.running.swap(true, Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            let mut failed_caches: Vec<usize> = Vec::new();
            let mut succeeded = false;
            for Round {
                id,
                chain,
                schema,
                key,
                generation,
            } in round
            {
                let cache = chain[0].clone();
                // One failure per cache and round is enough to know it is
                // still down; the others wait for the next round, their
                // attempts not counted.
                if failed_caches.contains(&id.0) {
                    continue;
                }
                self.inner.counters.invalidation_retries.incr();
                if cache.invalidate(schema, &key).await.is_ok() {
                    {
                        let mut pending = self.lock();
                        if pending.get(&id).is_some_and(|r| r.generation == generation) {
                            pending.remove(&id);
                            self.inner.queued.store(pending.len(), Ordering::SeqCst);
                        }
                    }
                    succeeded = true;
                    // The levels in front, again, now that the failed one
                    // no longer holds the old row.
                    for (i, front) in chain.iter().enumerate().skip(1) {
                        if front.invalidate(schema, &key).await.is_err() {
                            self.push(chain[i..].to_vec(), schema, key.clone());
                            break;
                        }
                    }
                    continue;
                }
                failed_caches.push(id.0);
                if let Some(r) = self.lock().get_mut(&id) {
                    r.attempts += 1;
                    if r.attempts == 1 || r.attempts.is_power_of_two() {
                        tracing::warn!(target: "octopus::plan", cache = cache.name(), table = schema.table(), %key, attempts = r.attempts, "cache invalidation still failing; retrying until the cache answers");
                    }
                }
            }
            delay = if succeeded {
                FIRST_DELAY
            } else {
                (delay * 2).min(MAX_DELAY)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{FillToken, Lookup};
    use crate::store::BoxFuture;
    use crate::value::Record;
    use crate::{Model, Result, TestRow as Row};

    /// A cache that counts invalidations.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicU64);

    impl Cache for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn lookup<'a>(&'a self, _: &'static Schema, _: &'a Key) -> BoxFuture<'a, Result<Lookup>> {
            Box::pin(async { Ok(Lookup::Miss(FillToken::Absent)) })
        }
        fn fill<'a>(
            &'a self, _: &'static Schema, _: &'a Record, _: FillToken,
        ) -> BoxFuture<'a, Result<bool>> {
            Box::pin(async { Ok(false) })
        }
        fn put<'a>(&'a self, _: &'static Schema, _: &'a Record) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }
        fn invalidate<'a>(&'a self, _: &'static Schema, _: &'a Key) -> BoxFuture<'a, Result<()>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        }
    }

    /// A push outside any runtime (a write's guard dropped while the
    /// runtime shuts down, say) queues the key without a worker; the next
    /// push inside a runtime starts one, which retries both.
    #[test]
    fn a_push_outside_a_runtime_does_not_stall_the_queue() {
        let cache = Arc::new(Counting::default());
        let retries = Retries::new(Arc::new(PlanCounters::default()));
        retries.push(vec![cache.clone()], Row::SCHEMA, Key::UInt(1));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            retries.push(vec![cache.clone()], Row::SCHEMA, Key::UInt(2));
            for _ in 0..500 {
                if cache.0.load(Ordering::SeqCst) == 2 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!(
                "{} of 2 queued invalidations were retried",
                cache.0.load(Ordering::SeqCst)
            );
        });
    }
}
