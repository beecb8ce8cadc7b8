//! Whether a cache level's hit may be served, after invalidations that did
//! not land.
//!
//! A write whose invalidation of a level failed (the cache hung or was
//! down) is acknowledged, and the invalidation is retried in the
//! background until the cache answers (`retry.rs`). A cache that comes
//! back with its rows (a blackhole or a partition, not a restart) holds
//! the old row until that retry lands. Two rules keep readers off it:
//!
//! 1. **A key queued for retry is not served from the failed level, nor
//!    from a level in front of it.** Exact, and this plan's own: its
//!    retry queue says which keys a level may hold old rows of.
//! 2. **Under a fleet lease, a shared level that failed is not trusted
//!    for a while after it answers again.** Another server's retries are
//!    not in this plan's queue. Every server retries at least every
//!    [`MAX_DELAY`]; once a level that failed (an error saying the cache
//!    is unavailable, a lookup given up, its breaker refusing) answers
//!    again, its hits are distrusted for *settle* = 2 × (`MAX_DELAY` + the
//!    level's deadline), by which time every server that still had a
//!    retry queued for it has sent it. It covers servers that saw the
//!    cache fail; a server that made no call to the level while it was
//!    unreachable (idle the whole time) does not know to distrust it, and a
//!    true partition (the cache answering some servers and not the
//!    writer, for longer than the settle time) is not covered (ARCHITECTURE.md,
//!    "Known limits").
//!
//! A hit that is not trusted is handled like an undecodable value: the
//! row is invalidated in its level, the lookup after that gives the fill
//! token, and the primary's row is read and filled with it
//! (`LevelStats::distrusted` counts them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Level, Plan};
use crate::Result;
use crate::cache::{FillToken, Lookup};
use crate::retry::MAX_DELAY;
use crate::schema::Schema;
use crate::value::Key;

/// A level's recent failures, as rule 2 needs them.
pub(super) struct Health {
    /// How long hits stay distrusted after the level answers again; zero
    /// turns the rule off.
    settle: Duration,
    /// Set by a failure, cleared by the next success.
    failing: AtomicBool,
    /// Nanoseconds after `base` from which hits are trusted.
    trusted_from: AtomicU64,
    base: Instant,
}

impl Health {
    /// The health of a level with `deadline`, on a plan with a fleet lease
    /// or not.
    pub(super) fn new(deadline: Option<Duration>, fleet: bool) -> Self {
        let settle = match deadline {
            Some(d) if fleet => 2 * (MAX_DELAY + d),
            _ => Duration::ZERO,
        };
        Health {
            settle,
            failing: AtomicBool::new(false),
            trusted_from: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    /// Notes a call's outcome: an unavailable cache is a failure; the first
    /// success after failures starts the settle time.
    pub(super) fn record<T>(&self, out: &Result<T>) {
        if self.settle.is_zero() {
            return;
        }
        match out {
            Err(e) if e.is_unavailable() => self.failing.store(true, Ordering::SeqCst),
            Err(_) => {}
            Ok(_) => {
                if self.failing.swap(false, Ordering::SeqCst) {
                    let from = self.base.elapsed() + self.settle;
                    self.trusted_from
                        .fetch_max(from.as_nanos() as u64, Ordering::SeqCst);
                }
            }
        }
    }

    /// Whether hits are trusted now.
    fn settled(&self) -> bool {
        self.settle.is_zero()
            || (!self.failing.load(Ordering::SeqCst)
                && self.base.elapsed().as_nanos() as u64
                    >= self.trusted_from.load(Ordering::SeqCst))
    }
}

impl Plan {
    /// Whether `level`'s hit of `key` may be served (see the module docs).
    pub(super) fn trusts(&self, level: &Level, schema: &'static Schema, key: &Key) -> bool {
        if !level.health.settled() {
            return false;
        }
        if self.retries.is_empty() {
            return true;
        }
        let at = self
            .levels
            .iter()
            .position(|l| std::ptr::eq(l, level))
            .unwrap_or(0);
        !self.levels[at..]
            .iter()
            .any(|l| self.retries.holds(&l.cache, schema, key))
    }

    /// A hit that is not trusted: counted, invalidated in its level, and a
    /// miss there; the token of the lookup after the invalidation lets the
    /// primary's row replace it.
    pub(super) async fn distrusted(
        &self, level: &Level, schema: &'static Schema, key: &Key,
    ) -> Option<FillToken> {
        level.counters.distrusted.incr();
        tracing::debug!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), %key, "cached row not trusted (an invalidation of it may not have landed yet): read from the primary");
        let dropped = level.cache.invalidate(schema, key).await;
        level.health.record(&dropped);
        if dropped.is_err() {
            level.counters.write_errors.incr();
            return None;
        }
        let after = level.cache.lookup(schema, key).await;
        level.health.record(&after);
        match after {
            Ok(Lookup::Miss(token)) => Some(token),
            _ => None,
        }
    }
}
