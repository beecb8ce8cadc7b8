//! Counters a plan keeps, and the snapshot an application reads.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::breaker::BreakerSnapshot;

#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub(crate) struct LevelCounters {
    pub hits: Counter,
    pub misses: Counter,
    pub skipped: Counter,
    pub fills: Counter,
    pub fill_races_lost: Counter,
    pub fill_errors: Counter,
    pub write_errors: Counter,
    pub undecodable: Counter,
    pub stale_served: Counter,
    pub gave_up: Counter,
    pub distrusted: Counter,
}

impl LevelCounters {
    pub(crate) fn snapshot(&self, name: &str, breaker: BreakerSnapshot) -> LevelStats {
        LevelStats {
            name: name.to_owned(),
            hits: self.hits.get(),
            misses: self.misses.get(),
            skipped: self.skipped.get(),
            fills: self.fills.get(),
            fill_races_lost: self.fill_races_lost.get(),
            fill_errors: self.fill_errors.get(),
            write_errors: self.write_errors.get(),
            undecodable: self.undecodable.get(),
            stale_served: self.stale_served.get(),
            gave_up: self.gave_up.get(),
            distrusted: self.distrusted.get(),
            breaker,
        }
    }
}

#[derive(Default)]
pub(crate) struct PlanCounters {
    pub primary_reads: Counter,
    pub primary_writes: Counter,
    pub herd_followers: Counter,
    pub invalidation_retries: Counter,
    pub invalidations_abandoned: Counter,
    pub fallback_writes: Counter,
}

/// One cache level's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelStats {
    /// The cache's name.
    pub name: String,
    /// Lookups answered by this level.
    pub hits: u64,
    /// Lookups this level could not answer.
    pub misses: u64,
    /// Lookups skipped because the level failed (unavailable, timed out).
    pub skipped: u64,
    /// Rows put into this level after a miss.
    pub fills: u64,
    /// Fills dropped because an invalidation raced them (the newer state
    /// was kept).
    pub fill_races_lost: u64,
    /// Fills that failed.
    pub fill_errors: u64,
    /// Invalidations or write-through puts that failed (each is retried).
    pub write_errors: u64,
    /// Cached values that did not fit the model (a column of the wrong
    /// type): each was a miss, dropped from the level, and the primary
    /// answered.
    pub undecodable: u64,
    /// Rows this level served past their time to live because the primary
    /// was unavailable (stale-if-error, off unless the plan turns it on).
    pub stale_served: u64,
    /// Lookups given up after half the level's deadline (counted in
    /// `skipped` too): the read went on without waiting for the rest.
    pub gave_up: u64,
    /// Hits not served because an invalidation of the row may not have
    /// landed yet (its key queued for retry, or, under a fleet lease, the
    /// level answering again after it failed): each was invalidated there
    /// and read from the primary (`octopus/src/plan/trust.rs`).
    pub distrusted: u64,
    /// The level's breaker.
    pub breaker: BreakerSnapshot,
}

/// A plan's counters at one moment; cheap to take.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanStats {
    /// Per cache level, in read order.
    pub levels: Vec<LevelStats>,
    /// Reads that reached the primary.
    pub primary_reads: u64,
    /// Writes the primary accepted.
    pub primary_writes: u64,
    /// Reads served by another reader's load of the same key.
    pub herd_followers: u64,
    /// Retries of failed cache invalidations.
    pub invalidation_retries: u64,
    /// Failed invalidations given up because the retry queue was full
    /// (100,000 keys); the cached value then lives until its TTL. Others
    /// are retried until their cache answers.
    pub invalidations_abandoned: u64,
    /// Writes handed to the fallback and acknowledged by it.
    pub fallback_writes: u64,
    /// The breaker of the primary's writes.
    pub breaker: BreakerSnapshot,
    /// The breaker of the primary's reads.
    pub read_breaker: BreakerSnapshot,
    /// The fallback's counters, if it keeps any (the journal does).
    pub fallback: Option<crate::fallback::FallbackStats>,
}
