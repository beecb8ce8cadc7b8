//! Plans: where writes go, in which order reads look, and what happens when
//! the primary fails. The read path is in `read`, the write path in `write`,
//! registries' per-table plans in `plans`.

mod checked;
mod fleet;
mod invalidation;
pub(crate) mod key_mutex;
mod lookup;
mod plans;
mod read;
mod stale;
mod trust;
mod write;

pub use plans::Plans;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::Result;
use crate::breaker::{BreakerOptions, CircuitBreaker};
use crate::cache::Cache;
use crate::fallback::{FailFast, Fallback, Mode};
use crate::flight::Flights;
use crate::journal::Journal;
use crate::retry::Retries;
use crate::schema::Schema;
use crate::stats::{LevelCounters, PlanCounters, PlanStats};
use crate::store::Store;

/// How a cache level follows writes to the primary. In a config file:
/// `invalidate` or `write_through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CachePolicy {
    /// Drop the key after the primary write; the next read fills it. The
    /// safe default under concurrency.
    #[default]
    Invalidate,
    /// Put the new row after the primary write (as the original Octopus
    /// did). Two concurrent writers of one key can leave the older row cached
    /// until its TTL; prefer `Invalidate` where that matters.
    WriteThrough,
}

struct Level {
    cache: Arc<dyn Cache>,
    policy: CachePolicy,
    counters: LevelCounters,
    /// The level's own breaker: while it is open the level is skipped, so
    /// a dead cache costs reads half its deadline (`lookup.rs`) only until
    /// the breaker opens.
    breaker: Arc<CircuitBreaker>,
    /// Its recent failures (`trust.rs`).
    health: trust::Health,
}

impl Level {
    /// Whether the level's breaker refuses calls (open, or half-open with
    /// its probes taken): then every call fails fast, and the breaker's
    /// own state change was the news, so failures are logged at debug.
    fn quiet(&self) -> bool {
        self.breaker.state() != crate::breaker::BreakerState::Closed
    }

    /// Logs a lookup that failed: a warning, unless the level's breaker
    /// is not closed (see [`Level::quiet`]).
    fn log_skip(&self, schema: &'static Schema, e: &crate::Error) {
        if self.quiet() {
            tracing::debug!(target: "octopus::plan", cache = self.cache.name(), table = schema.table(), error = %e, "cache level skipped");
        } else {
            tracing::warn!(target: "octopus::plan", cache = self.cache.name(), table = schema.table(), error = %e, "cache level skipped");
        }
    }

    fn new(
        cache: Arc<dyn Cache>, policy: CachePolicy, config: &BreakerOptions, fleet: bool,
    ) -> Result<Self> {
        let breaker = CircuitBreaker::new(format!("cache {}", cache.name()), config.clone())?;
        let health = trust::Health::new(cache.deadline(), fleet);
        Ok(Level {
            cache,
            policy,
            counters: LevelCounters::default(),
            breaker,
            health,
        })
    }
}

/// Composes stores for a [`crate::Dao`]: one primary (the source of truth)
/// behind a [`CircuitBreaker`], any number of caches in front of it, and a
/// [`Fallback`] for writes the primary cannot take.
///
/// - **Reads** look in the caches in order, then the primary; a hit fills
///   the levels in front of the one that answered. A cache that fails is
///   skipped (counted and logged). Fills are guarded ([`Cache`]): an
///   invalidation that races a fill always wins. Under a thundering herd on
///   one missing key, one reader loads it from the primary and the others
///   wait for that load (at most `herd_wait`, then load themselves).
/// - **Writes** go to the primary through its breaker; then each cache
///   invalidates or writes through ([`CachePolicy`]). A cache failure never
///   fails a write the primary accepted: the invalidation is retried in the
///   background and counted, and every cached row has a TTL, so a stale row
///   never outlives it.
/// - When the primary is **unavailable** or its breaker is open, the write
///   goes to the fallback; if the fallback acknowledges it, the caches are set
///   so reads see it.
///
/// ```
/// use octopus::{CachePolicy, MemoryStore, Plan};
/// use std::sync::Arc;
/// let plan = Plan::builder(Arc::new(MemoryStore::new()))
///     .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
///     .build()
///     .unwrap();
/// assert_eq!(plan.stats().levels.len(), 1);
/// ```
pub struct Plan {
    primary: Arc<dyn Store>,
    breaker: Arc<CircuitBreaker>,
    /// The primary's reads' own breaker: writes that time out (a locked
    /// SQLite file, say) do not make rows the primary could still read
    /// unreadable.
    read_breaker: Arc<CircuitBreaker>,
    levels: Vec<Level>,
    fallback: Arc<dyn Fallback>,
    herd_wait: Duration,
    /// Serve rows past their TTL while the primary is unavailable.
    stale_if_error: bool,
    /// Set when the plan runs on several servers (see `fleet.rs`).
    lease: Option<Duration>,
    flights: Flights,
    counters: Arc<PlanCounters>,
    retries: Retries,
    unchecked: checked::Unchecked,
    /// Held by journaled writes of a key until their caches followed (and
    /// by replay's invalidation of the key).
    journaled: Arc<key_mutex::KeyMutexes>,
    /// The levels as attached to the fallback, if they were (levels added
    /// later join them).
    attached: Option<invalidation::Levels>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("primary", &self.primary.name())
            .field(
                "caches",
                &self
                    .levels
                    .iter()
                    .map(|l| l.cache.name())
                    .collect::<Vec<_>>(),
            )
            .field("breaker", &self.breaker.state())
            .finish()
    }
}

/// Builds a [`Plan`].
pub struct PlanBuilder {
    primary: Arc<dyn Store>,
    breaker: Option<Arc<CircuitBreaker>>,
    read_breaker: Option<Arc<CircuitBreaker>>,
    breaker_config: BreakerOptions,
    levels: Vec<(Arc<dyn Cache>, CachePolicy)>,
    cache_breaker: BreakerOptions,
    fallback: Arc<dyn Fallback>,
    herd_wait: Duration,
    stale_if_error: bool,
    lease: Option<Duration>,
}

impl PlanBuilder {
    /// Adds a cache level after those already added.
    pub fn cache(mut self, cache: Arc<dyn Cache>, policy: CachePolicy) -> Self {
        self.levels.push((cache, policy));
        self
    }

    /// Configures the primary's breakers: the one its writes go through
    /// (and the fallback's replay), and the one its reads go through.
    pub fn breaker(mut self, config: BreakerOptions) -> Self {
        self.breaker_config = config;
        self
    }

    /// Configures each cache level's breaker (default: [`BreakerOptions`]'s
    /// defaults). A level whose breaker is open is skipped: reads go to the
    /// next level, invalidations to the retry queue.
    pub fn cache_breaker(mut self, config: BreakerOptions) -> Self {
        self.cache_breaker = config;
        self
    }

    /// Uses an existing breaker for the primary's writes, so several plans
    /// over one primary share it.
    pub fn shared_breaker(mut self, breaker: Arc<CircuitBreaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Uses an existing breaker for the primary's reads, so several plans
    /// over one primary share it.
    pub fn shared_read_breaker(mut self, breaker: Arc<CircuitBreaker>) -> Self {
        self.read_breaker = Some(breaker);
        self
    }

    /// Sets the fallback for writes the primary cannot take (default
    /// [`FailFast`]).
    pub fn fallback(mut self, fallback: Arc<dyn Fallback>) -> Self {
        self.fallback = fallback;
        self
    }

    /// Makes `journal` the fallback (shorthand for
    /// `.fallback(Arc::new(journal))`): writes the primary cannot take are
    /// journaled (and acknowledged as [`crate::WriteOutcome::Journaled`]), reads
    /// see pending writes, and the journal's replayer applies them to the
    /// primary when it answers again. While a key has pending entries, its
    /// writes go to the journal too, so no older entry overtakes a newer
    /// write. The plan must be built inside a tokio runtime (the replayer
    /// runs on it). One journal serves one primary.
    pub fn journal(self, journal: Journal) -> Self {
        self.fallback(Arc::new(journal))
    }

    /// How long readers of a key wait for another reader's load of it before
    /// loading it themselves (default 2 s).
    pub fn herd_wait(mut self, wait: Duration) -> Self {
        self.herd_wait = wait;
        self
    }

    /// The plan; fails if the breaker settings are invalid.
    pub fn build(self) -> Result<Plan> {
        let breaker = match self.breaker {
            Some(b) => b,
            None => CircuitBreaker::new(self.primary.name(), self.breaker_config.clone())?,
        };
        let read_breaker = match self.read_breaker {
            Some(b) => b,
            None => CircuitBreaker::new(
                format!("{} (reads)", self.primary.name()),
                self.breaker_config,
            )?,
        };
        let counters = Arc::new(PlanCounters::default());
        // Everything that can fail first: attaching starts the fallback's
        // background work.
        let levels: Vec<Level> = self
            .levels
            .into_iter()
            .map(|(cache, policy)| {
                Level::new(cache, policy, &self.cache_breaker, self.lease.is_some())
            })
            .collect::<Result<_>>()?;
        self.fallback
            .attach(self.primary.clone(), breaker.clone())?;
        let retries = Retries::new(counters.clone());
        let journaled = Arc::new(key_mutex::KeyMutexes::default());
        let attached = (!levels.is_empty()).then(|| {
            let caches = invalidation::Levels::of(&levels, &retries, &journaled);
            self.fallback.attach_caches(Arc::new(caches.clone()));
            caches
        });
        Ok(Plan {
            primary: self.primary,
            breaker,
            read_breaker,
            levels,
            fallback: self.fallback,
            herd_wait: self.herd_wait,
            stale_if_error: self.stale_if_error,
            lease: self.lease,
            flights: Flights::default(),
            retries,
            counters,
            unchecked: checked::Unchecked::default(),
            journaled,
            attached,
        })
    }
}

impl Plan {
    /// A builder over `primary`, with the default breaker and no caches.
    pub fn builder(primary: Arc<dyn Store>) -> PlanBuilder {
        PlanBuilder {
            primary,
            breaker: None,
            read_breaker: None,
            breaker_config: BreakerOptions::default(),
            levels: Vec::new(),
            cache_breaker: BreakerOptions::default(),
            fallback: Arc::new(FailFast),
            herd_wait: Duration::from_secs(2),
            stale_if_error: false,
            lease: None,
        }
    }

    /// A plan with `primary` as the source of truth, the default breaker and
    /// no caches.
    pub fn new(primary: impl Store) -> Self {
        Plan::from_arc(Arc::new(primary))
    }

    /// A plan over a shared primary.
    pub fn from_arc(primary: Arc<dyn Store>) -> Self {
        match Plan::builder(primary).build() {
            Ok(plan) => plan,
            // The default breaker settings are valid; a failure here is a
            // bug in them, caught by the crate's tests.
            Err(e) => panic!("default plan settings rejected: {e}"),
        }
    }

    /// Adds an invalidating cache after the ones already added.
    pub fn with_cache(self, cache: impl Cache) -> Self {
        self.with_cache_arc(Arc::new(cache))
    }

    /// Adds a shared invalidating cache.
    pub fn with_cache_arc(self, cache: Arc<dyn Cache>) -> Self {
        self.with_cache_policy(cache, CachePolicy::Invalidate)
    }

    /// Adds a shared cache with `policy`.
    pub fn with_cache_policy(mut self, cache: Arc<dyn Cache>, policy: CachePolicy) -> Self {
        match Level::new(
            cache,
            policy,
            &BreakerOptions::default(),
            self.lease.is_some(),
        ) {
            Ok(level) => {
                match &self.attached {
                    Some(attached) => attached.push(&level),
                    None => {
                        let levels = invalidation::Levels::of(
                            std::slice::from_ref(&level),
                            &self.retries,
                            &self.journaled,
                        );
                        self.fallback.attach_caches(Arc::new(levels.clone()));
                        self.attached = Some(levels);
                    }
                }
                self.levels.push(level);
            }
            // The default settings are valid (the crate's tests check them).
            Err(e) => panic!("default cache breaker settings rejected: {e}"),
        }
        self
    }

    /// The primary store.
    pub fn primary(&self) -> &Arc<dyn Store> {
        &self.primary
    }

    /// The cache levels, in read order.
    pub fn caches(&self) -> Vec<Arc<dyn Cache>> {
        self.levels.iter().map(|l| l.cache.clone()).collect()
    }

    /// The circuit breaker of the primary's reads.
    pub fn read_breaker(&self) -> &Arc<CircuitBreaker> {
        &self.read_breaker
    }

    /// The circuit breaker of the primary's writes (and of the fallback's
    /// replay into it).
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    /// The counters, now.
    pub fn stats(&self) -> PlanStats {
        let c = &self.counters;
        PlanStats {
            levels: self
                .levels
                .iter()
                .map(|l| l.counters.snapshot(l.cache.name(), l.breaker.snapshot()))
                .collect(),
            primary_reads: c.primary_reads.get(),
            primary_writes: c.primary_writes.get(),
            herd_followers: c.herd_followers.get(),
            invalidation_retries: c.invalidation_retries.get(),
            invalidations_abandoned: c.invalidations_abandoned.get(),
            fallback_writes: c.fallback_writes.get(),
            breaker: self.breaker.snapshot(),
            read_breaker: self.read_breaker.snapshot(),
            fallback: self.fallback.stats(),
        }
    }

    /// The fallback for writes the primary cannot take.
    pub fn fallback(&self) -> &Arc<dyn Fallback> {
        &self.fallback
    }

    /// Where the plan stands: healthy, journaling writes, or draining them
    /// into the primary.
    pub fn mode(&self) -> Mode {
        self.fallback.mode()
    }

    /// Changes of [`Plan::mode`], as they happen.
    pub fn watch_mode(&self) -> watch::Receiver<Mode> {
        self.fallback.watch_mode()
    }

    /// Completes once nothing is pending in the fallback (every journaled
    /// write applied to the primary or dead-lettered).
    pub async fn drained(&self) {
        self.fallback.drained().await;
    }

    /// Stops the plan's background work (the fallback's replayer and
    /// writer) and releases what it holds (a journal's directory lock)
    /// before returning. Reads and writes that need the fallback fail
    /// afterwards.
    pub async fn close(&self) -> Result<()> {
        self.fallback.close().await
    }

    /// Whether the fallback queues writes durably (and so is worth checking
    /// writes against): only durable fallbacks keep counters.
    fn durable_fallback(&self) -> bool {
        self.fallback.stats().is_some()
    }

    /// Makes a model known to the fallback (its pending writes can then be
    /// replayed). [`crate::Dao::new`] calls it.
    pub fn register(&self, schema: &'static Schema) {
        self.fallback.register(schema);
    }

    /// Ensures the model's table in the primary. With a durable fallback, a
    /// primary that is down does not stop the application from starting:
    /// the table is ensured before the plan first reads or writes it in the
    /// primary, and by the replayer before it applies entries to it.
    pub(crate) async fn ensure_schema(&self, schema: &'static Schema) -> Result<()> {
        self.fallback.register(schema);
        match self.breaker.call(self.primary.ensure_schema(schema)).await {
            Err(e) if e.is_unavailable() && self.durable_fallback() => {
                tracing::warn!(target: "octopus::plan", table = schema.table(), error = %e, "primary unavailable at open; its table will be checked before its first use");
                self.unchecked.insert(schema);
                Ok(())
            }
            Ok(()) => {
                self.unchecked.remove(schema);
                Ok(())
            }
            other => other,
        }
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        self.fallback.detach();
    }
}
