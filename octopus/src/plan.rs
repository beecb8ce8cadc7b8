//! Plans: where writes go, in which order reads look, and what happens when
//! the primary fails.

use std::sync::Arc;
use std::time::Duration;

use crate::Result;
use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::cache::{Cache, FillToken, Lookup};
use crate::fallback::{FailFast, Fallback, Write, WriteOutcome};
use crate::flight::{self, Flights, Role};
use crate::journal::{Journal, Pending};
use crate::retry::Retries;
use crate::schema::Schema;
use crate::stats::{LevelCounters, PlanCounters, PlanStats};
use crate::store::{Store, key_of};
use crate::value::{Key, Record};

/// How a cache level follows writes to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    levels: Vec<Level>,
    fallback: Arc<dyn Fallback>,
    journal: Option<Journal>,
    replayer_stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    herd_wait: Duration,
    flights: Flights,
    counters: Arc<PlanCounters>,
    retries: Retries,
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
    breaker_config: BreakerConfig,
    levels: Vec<(Arc<dyn Cache>, CachePolicy)>,
    fallback: Arc<dyn Fallback>,
    journal: Option<Journal>,
    herd_wait: Duration,
}

impl PlanBuilder {
    /// Adds a cache level after those already added.
    pub fn cache(mut self, cache: Arc<dyn Cache>, policy: CachePolicy) -> Self {
        self.levels.push((cache, policy));
        self
    }

    /// Configures the primary's own breaker.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker_config = config;
        self
    }

    /// Uses an existing breaker, so several plans over one primary share it.
    pub fn shared_breaker(mut self, breaker: Arc<CircuitBreaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Sets the fallback for writes the primary cannot take (default
    /// [`FailFast`]).
    pub fn fallback(mut self, fallback: Arc<dyn Fallback>) -> Self {
        self.fallback = fallback;
        self
    }

    /// Makes `journal` the fallback: writes the primary cannot take are
    /// journaled (and acknowledged as [`WriteOutcome::Journaled`]), reads
    /// see pending writes, and a background task replays the journal into
    /// the primary when it answers again. While entries are pending, every
    /// write goes to the journal, so no older entry overtakes a newer write;
    /// when it is empty, writes go to the primary again. The plan must be
    /// built inside a tokio runtime (the replayer runs on it). One journal
    /// serves one primary.
    pub fn journal(mut self, journal: Journal) -> Self {
        self.fallback = Arc::new(journal.clone());
        self.journal = Some(journal);
        self
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
            None => CircuitBreaker::new(self.primary.name(), self.breaker_config)?,
        };
        let counters = Arc::new(PlanCounters::default());
        let mut replayer_stop = None;
        if let Some(journal) = &self.journal
            && journal.claim(self.primary.name())?
        {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| crate::Error::Config {
                key: journal.dir().display().to_string(),
                reason: "a plan with a journal must be built inside a tokio runtime (its replayer runs there)".into(),
            })?;
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            runtime.spawn(crate::journal::replay::drain(
                journal.clone(),
                self.primary.clone(),
                breaker.clone(),
                stop.clone(),
            ));
            replayer_stop = Some(stop);
        }
        Ok(Plan {
            journal: self.journal,
            replayer_stop,
            primary: self.primary,
            breaker,
            levels: self
                .levels
                .into_iter()
                .map(|(cache, policy)| Level {
                    cache,
                    policy,
                    counters: LevelCounters::default(),
                })
                .collect(),
            fallback: self.fallback,
            herd_wait: self.herd_wait,
            flights: Flights::default(),
            retries: Retries::new(counters.clone()),
            counters,
        })
    }
}

impl Plan {
    /// A builder over `primary`, with the default breaker and no caches.
    pub fn builder(primary: Arc<dyn Store>) -> PlanBuilder {
        PlanBuilder {
            primary,
            breaker: None,
            breaker_config: BreakerConfig::default(),
            levels: Vec::new(),
            fallback: Arc::new(FailFast),
            journal: None,
            herd_wait: Duration::from_secs(2),
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
        self.levels.push(Level {
            cache,
            policy,
            counters: LevelCounters::default(),
        });
        self
    }

    /// The primary store.
    pub fn primary(&self) -> &Arc<dyn Store> {
        &self.primary
    }

    /// The primary's circuit breaker.
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
                .map(|l| l.counters.snapshot(l.cache.name()))
                .collect(),
            primary_reads: c.primary_reads.get(),
            primary_writes: c.primary_writes.get(),
            herd_followers: c.herd_followers.get(),
            invalidation_retries: c.invalidation_retries.get(),
            invalidations_abandoned: c.invalidations_abandoned.get(),
            fallback_writes: c.fallback_writes.get(),
            breaker: self.breaker.snapshot(),
            journal: self.journal.as_ref().map(Journal::stats),
        }
    }

    /// The journal, if the plan has one.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// Ensures the model's table in the primary. With a journal, a primary
    /// that is down does not stop the application from starting: the table
    /// is ensured by the replayer before it applies entries to it.
    pub(crate) async fn ensure_schema(&self, schema: &'static Schema) -> Result<()> {
        if let Some(journal) = &self.journal {
            journal.register(schema);
        }
        match self.breaker.call(self.primary.ensure_schema(schema)).await {
            Err(e) if e.is_unavailable() && self.journal.is_some() => {
                tracing::warn!(target: "octopus::plan", table = schema.table(), error = %e, "primary unavailable at open; its table will be ensured before replay");
                Ok(())
            }
            other => other,
        }
    }

    /// The pending journal write of `key`, if the journal has one.
    fn pending(&self, schema: &'static Schema, key: &Key) -> Result<Option<Option<Record>>> {
        match &self.journal {
            Some(j) if j.pending() > 0 => Ok(j.lookup(schema, key)?.map(|p| match p {
                Pending::Put(r) => Some(r),
                Pending::Deleted => None,
            })),
            _ => Ok(None),
        }
    }

    /// Reads `key` through the cache levels, then the primary.
    pub async fn read(&self, schema: &'static Schema, key: &Key) -> Result<Option<Record>> {
        if let Some(pending) = self.pending(schema, key)? {
            return Ok(pending);
        }
        let mut tokens: Vec<Option<FillToken>> = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            match level.cache.lookup(schema, key).await {
                Ok(Lookup::Hit(record)) => {
                    level.counters.hits.incr();
                    self.fill(schema, &record, &tokens).await;
                    return Ok(Some(record));
                }
                Ok(Lookup::Miss(token)) => {
                    level.counters.misses.incr();
                    tokens.push(Some(token));
                }
                Err(e) => {
                    level.counters.skipped.incr();
                    tracing::warn!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), error = %e, "cache level skipped");
                    tokens.push(None);
                }
            }
        }
        if self.levels.is_empty() {
            // Nothing to fill: single flight would only add a lock and a map
            // entry to every read.
            return self.primary_get(schema, key).await;
        }
        match self.flights.join(schema, key) {
            Role::Leader(leader) => {
                let out = self.primary_get(schema, key).await;
                if let Ok(Some(record)) = &out {
                    self.fill(schema, record, &tokens).await;
                }
                leader.land(match &out {
                    Ok(found) => Ok(found.clone()),
                    Err(_) => Err(()),
                });
                out
            }
            Role::Follower(rx) => {
                match tokio::time::timeout(self.herd_wait, flight::wait(rx)).await {
                    Ok(Some(found)) => {
                        self.counters.herd_followers.incr();
                        Ok(found)
                    }
                    _ => {
                        let out = self.primary_get(schema, key).await;
                        if let Ok(Some(record)) = &out {
                            self.fill(schema, record, &tokens).await;
                        }
                        out
                    }
                }
            }
        }
    }

    async fn primary_get(&self, schema: &'static Schema, key: &Key) -> Result<Option<Record>> {
        self.counters.primary_reads.incr();
        self.breaker.call(self.primary.get(schema, key)).await
    }

    /// Reads `keys` (one slot per key, in order), each level asked once for
    /// what is still missing.
    pub async fn read_many(
        &self,
        schema: &'static Schema,
        keys: &[Key],
    ) -> Result<Vec<Option<Record>>> {
        let mut found: Vec<Option<Record>> = vec![None; keys.len()];
        // Per key, the tokens of the levels that missed it.
        let mut tokens: Vec<Vec<Option<FillToken>>> = vec![Vec::new(); keys.len()];
        let mut missing: Vec<usize> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            match self.pending(schema, key)? {
                Some(pending) => found[i] = pending,
                None => missing.push(i),
            }
        }
        for level in &self.levels {
            if missing.is_empty() {
                break;
            }
            let ask: Vec<Key> = missing.iter().map(|&i| keys[i].clone()).collect();
            match level.cache.lookup_many(schema, &ask).await {
                Ok(lookups) => {
                    let mut still = Vec::with_capacity(missing.len());
                    for (&i, lookup) in missing.iter().zip(lookups) {
                        match lookup {
                            Lookup::Hit(record) => {
                                level.counters.hits.incr();
                                self.fill(schema, &record, &tokens[i]).await;
                                found[i] = Some(record);
                            }
                            Lookup::Miss(token) => {
                                level.counters.misses.incr();
                                tokens[i].push(Some(token));
                                still.push(i);
                            }
                        }
                    }
                    missing = still;
                }
                Err(e) => {
                    level.counters.skipped.add(missing.len() as u64);
                    tracing::warn!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), error = %e, "cache level skipped");
                    for &i in &missing {
                        tokens[i].push(None);
                    }
                }
            }
        }
        if !missing.is_empty() {
            let ask: Vec<Key> = missing.iter().map(|&i| keys[i].clone()).collect();
            self.counters.primary_reads.incr();
            let rows = self
                .breaker
                .call(self.primary.get_many(schema, &ask))
                .await?;
            for (&i, row) in missing.iter().zip(rows) {
                if let Some(record) = &row {
                    self.fill(schema, record, &tokens[i]).await;
                }
                found[i] = row;
            }
        }
        Ok(found)
    }

    /// Fills the levels whose tokens are given (a level that failed its
    /// lookup has none and is left alone).
    async fn fill(&self, schema: &'static Schema, record: &Record, tokens: &[Option<FillToken>]) {
        for (level, token) in self.levels.iter().zip(tokens) {
            let Some(token) = token else { continue };
            match level.cache.fill(schema, record, *token).await {
                Ok(true) => level.counters.fills.incr(),
                Ok(false) => level.counters.fill_races_lost.incr(),
                Err(e) => {
                    level.counters.fill_errors.incr();
                    tracing::warn!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), error = %e, "cache fill failed");
                }
            }
        }
    }

    /// Runs `write` against the primary, or the fallback when the primary is
    /// unavailable. On success the caches follow (invalidate or write
    /// through); `existed` is the primary's answer to a delete.
    pub async fn write(
        &self,
        schema: &'static Schema,
        write: Write,
    ) -> Result<(WriteOutcome, bool)> {
        let key = match &write {
            Write::Insert(r) | Write::Update { record: r, .. } => key_of(schema, r)?,
            Write::Delete(k) => k.clone(),
        };
        let draining = self.journal.as_ref().is_some_and(|j| j.pending() > 0);
        let out = match &write {
            // While the journal holds entries, writes queue behind them, so
            // no older entry can overtake a newer write.
            _ if draining => Err(crate::Error::unavailable(
                self.primary.name(),
                "the journal is draining into the primary",
            )),
            Write::Insert(r) => self
                .breaker
                .call(self.primary.insert(schema, r))
                .await
                .map(|()| true),
            Write::Update {
                record,
                expected_version,
            } => self
                .breaker
                .call(self.primary.update(schema, record, *expected_version))
                .await
                .map(|()| true),
            Write::Delete(k) => self.breaker.call(self.primary.delete(schema, k)).await,
        };
        match out {
            Ok(existed) => {
                self.counters.primary_writes.incr();
                self.forget_flight(schema, &key);
                self.follow(schema, &key, write.record(), false).await;
                Ok((WriteOutcome::Primary, existed))
            }
            Err(e) if e.is_unavailable() => {
                let outcome = self.fallback.write(schema, &write, e).await?;
                self.counters.fallback_writes.incr();
                self.forget_flight(schema, &key);
                self.follow(schema, &key, write.record(), true).await;
                Ok((outcome, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Detaches the key's in-flight load (reads use single flight only when
    /// there are caches to fill).
    fn forget_flight(&self, schema: &'static Schema, key: &Key) {
        if !self.levels.is_empty() {
            self.flights.forget(schema, key);
        }
    }

    /// Brings every cache level in line with a write: a put for
    /// write-through levels (and for every level when the write went to the
    /// fallback, so reads see it), an invalidation otherwise.
    async fn follow(
        &self,
        schema: &'static Schema,
        key: &Key,
        record: Option<&Record>,
        set_all: bool,
    ) {
        for level in &self.levels {
            let put = match record {
                Some(r) if set_all || level.policy == CachePolicy::WriteThrough => Some(r),
                _ => None,
            };
            let done = match put {
                Some(r) => level.cache.put(schema, r).await,
                None => level.cache.invalidate(schema, key).await,
            };
            if let Err(e) = done {
                level.counters.write_errors.incr();
                tracing::warn!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), %key, error = %e, "cache invalidation failed; retrying in the background");
                self.retries.push(level.cache.clone(), schema, key.clone());
            }
        }
    }
}

/// The plan of every model of a registry: a default, and per-table plans.
///
/// A [`Plan`] converts into `Plans` (every model uses it).
#[derive(Debug, Clone)]
pub struct Plans {
    default: Arc<Plan>,
    by_table: std::collections::BTreeMap<String, Arc<Plan>>,
}

impl Plans {
    /// Plans where every model uses `default`.
    pub fn new(default: impl Into<Arc<Plan>>) -> Self {
        Plans {
            default: default.into(),
            by_table: Default::default(),
        }
    }

    /// Gives the model stored in `table` its own plan.
    pub fn with_table(mut self, table: impl Into<String>, plan: impl Into<Arc<Plan>>) -> Self {
        self.by_table.insert(table.into(), plan.into());
        self
    }

    /// The plan of the model stored in `table`.
    pub fn for_table(&self, table: &str) -> &Arc<Plan> {
        self.by_table.get(table).unwrap_or(&self.default)
    }

    /// The default plan.
    pub fn default_plan(&self) -> &Arc<Plan> {
        &self.default
    }

    /// Fails naming a per-table plan whose table no model in `tables` uses
    /// (a typo in a config file, say).
    pub fn check_tables(&self, tables: &[&str]) -> Result<()> {
        match self.by_table.keys().find(|t| !tables.contains(&t.as_str())) {
            Some(t) => Err(crate::Error::Config {
                key: format!("models.{t}"),
                reason: format!(
                    "no registered model is stored in table `{t}` (known: {})",
                    tables.join(", ")
                ),
            }),
            None => Ok(()),
        }
    }
}

impl From<Plan> for Plans {
    fn from(plan: Plan) -> Self {
        Plans::new(plan)
    }
}

impl From<Arc<Plan>> for Plans {
    fn from(plan: Arc<Plan>) -> Self {
        Plans::new(plan)
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        if let Some(stop) = &self.replayer_stop {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(j) = &self.journal {
                j.wake();
            }
        }
    }
}
