//! The write path: the primary through its breaker, or the fallback; then
//! the cache levels follow.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache::Lookup;
use crate::change::{Change, Precondition};
use crate::fallback::{Write, WriteOutcome};
use crate::schema::Schema;
use crate::store::key_of;
use crate::value::{Key, Record};
use crate::{Error, Result};

use super::{CachePolicy, Plan};

impl Plan {
    /// Runs `write` against the primary, or the fallback when the primary is
    /// unavailable. On success the caches follow (invalidate or write
    /// through); `existed` is the primary's answer to a delete.
    pub async fn write(
        &self, schema: &'static Schema, write: Write,
    ) -> Result<(WriteOutcome, bool)> {
        let key = match &write {
            Write::Insert(r) | Write::Update { record: r, .. } => key_of(schema, r)?,
            Write::Delete { key, .. } => key.clone(),
        };
        // A key with pending entries queues behind them, so no older entry
        // can overtake a newer write.
        let queued = self.fallback.has_pending() && self.fallback.must_queue(schema, &key).await;
        // From here the primary may change: if this future is dropped before
        // the caches follow, the retry queue makes them.
        let mut unfollowed = Unfollowed::new(self, schema, &key);
        // Set once the primary call begins (its breaker let it through).
        let sent = AtomicBool::new(false);
        let out = if queued {
            Err(Error::unavailable(
                self.primary.name(),
                "writes of this key queue behind its pending entries",
            ))
        } else {
            self.primary_write(schema, &write, &sent).await
        };
        match out {
            Ok(existed) => {
                self.counters.primary_writes.incr();
                self.forget_flight(schema, &key);
                let failed = self
                    .follow(schema, &key, write.record(), false, &mut unfollowed)
                    .await;
                self.wait_out_lease(schema, &key, failed).await;
                Ok((WriteOutcome::Primary, existed))
            }
            Err(e) if e.is_unavailable() => {
                // The primary may have carried it out before failing to
                // answer (the answer lost to a crash or a timeout).
                let in_doubt = sent.load(Ordering::SeqCst) && e.is_in_doubt();
                // From the append to the cache puts: another journaled write
                // of the key waits, so the caches get its rows in journal
                // order (other servers read them during the outage).
                let _in_order = if self.levels.is_empty() {
                    None
                } else {
                    Some(self.journaled.lock(schema, &key).await)
                };
                let outcome = match self.to_fallback(schema, &key, &write, e).await {
                    Ok(outcome) => outcome,
                    Err(e) if e.is_unavailable() => {
                        // No fallback took it, and the primary may have
                        // committed before it failed to answer (a
                        // timeout): the cached row goes.
                        self.follow(schema, &key, None, false, &mut unfollowed)
                            .await;
                        return Err(e);
                    }
                    Err(refused) if in_doubt => {
                        // Refused, but perhaps applied already: the caller
                        // must not be told it did not happen, and the
                        // cached row may be older than the primary's.
                        self.follow(schema, &key, None, false, &mut unfollowed)
                            .await;
                        return Err(Error::unavailable(
                            self.primary.name(),
                            format!(
                                "the write may have been applied before the primary stopped \
                                 answering, and the fallback refused it ({refused}): its outcome \
                                 is unknown"
                            ),
                        ));
                    }
                    Err(e) => {
                        // A durable fallback refused it (checked against
                        // the pending entries or the cached row, which
                        // stays: it is what checks the next write).
                        unfollowed.disarm();
                        return Err(e);
                    }
                };
                self.counters.fallback_writes.incr();
                self.forget_flight(schema, &key);
                let failed = self
                    .follow(schema, &key, write.record(), true, &mut unfollowed)
                    .await;
                drop(_in_order);
                self.wait_out_lease(schema, &key, failed).await;
                Ok((outcome, true))
            }
            Err(
                e @ (Error::Conflict { .. } | Error::NotFound { .. } | Error::AlreadyExists { .. }),
            ) => {
                // The caller likely built the write on a cached row the
                // primary no longer holds: that row must not outlive the
                // error it caused.
                self.follow(schema, &key, None, false, &mut unfollowed)
                    .await;
                Err(e)
            }
            Err(e) => {
                unfollowed.disarm();
                Err(e)
            }
        }
    }

    /// The write, on the primary through its breaker; `true` unless a
    /// delete found nothing.
    async fn primary_write(
        &self, schema: &'static Schema, write: &Write, sent: &AtomicBool,
    ) -> Result<bool> {
        self.checked(schema).await?;
        let primary = &self.primary;
        match write {
            Write::Insert(r) => self
                .breaker
                .call(async {
                    sent.store(true, Ordering::SeqCst);
                    primary.insert(schema, r).await
                })
                .await
                .map(|()| true),
            Write::Update {
                record,
                expected_version,
            } => self
                .breaker
                .call(async {
                    sent.store(true, Ordering::SeqCst);
                    primary.update(schema, record, *expected_version).await
                })
                .await
                .map(|()| true),
            Write::Delete {
                key,
                expected_version: None,
            } => {
                let call = async {
                    sent.store(true, Ordering::SeqCst);
                    primary.delete(schema, key).await
                };
                self.breaker.call(call).await
            }
            Write::Delete {
                key,
                expected_version: Some(v),
            } => {
                let change = [Change {
                    key: key.clone(),
                    precondition: Precondition::Version(*v),
                    row: None,
                }];
                let call = async {
                    sent.store(true, Ordering::SeqCst);
                    primary.apply(schema, &change).await
                };
                let mut results = self.breaker.call(call).await?;
                results.pop().unwrap_or(Ok(())).map(|()| true)
            }
        }
    }

    /// Hands a write the primary could not take to the fallback. A durable
    /// fallback gets it only if the primary's own checks pass (a value the
    /// primary would refuse is refused now, not queued), with the row a
    /// cache holds for the key to check it against.
    async fn to_fallback(
        &self, schema: &'static Schema, key: &Key, write: &Write, error: Error,
    ) -> Result<WriteOutcome> {
        if !self.durable_fallback() {
            return self.fallback.write(schema, write, None, error).await;
        }
        if let Some(record) = write.record() {
            self.primary.validate(schema, record)?;
        }
        let cached = self.cached_row(schema, key).await;
        self.fallback
            .write(schema, write, cached.as_ref(), error)
            .await
    }

    /// The row the first cache level that holds `key` has.
    async fn cached_row(&self, schema: &'static Schema, key: &Key) -> Option<Record> {
        for level in &self.levels {
            if let Ok(Lookup::Hit(row)) = level.breaker.call(level.cache.lookup(schema, key)).await
                && self.trusts(level, schema, key)
            {
                return Some(row);
            }
        }
        None
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
    ///
    /// From the level nearest the primary to the front: a reader that
    /// misses a level after it followed finds every level behind it
    /// followed too, so it can never fetch the old row from a deeper level
    /// and fill it in front with a token taken after the front level's
    /// invalidation (ARCHITECTURE.md, "The cache protocol"). `unfollowed`
    /// counts down as levels follow (see [`Unfollowed`]). Returns the
    /// deepest level whose step failed (handed to the retry queue), if any.
    async fn follow(
        &self, schema: &'static Schema, key: &Key, record: Option<&Record>, set_all: bool,
        unfollowed: &mut Unfollowed<'_>,
    ) -> Option<usize> {
        let mut failed = None;
        // Local rows are anchored before the write reached the primary or
        // the fallback (see `fleet.rs`).
        let anchor = unfollowed.anchor;
        for (i, level) in self.levels.iter().enumerate().rev() {
            let put = match record {
                Some(r) if set_all || level.policy == CachePolicy::WriteThrough => Some(r),
                _ => None,
            };
            let done = match put {
                Some(r) => {
                    let put = match self.local_until(level, anchor) {
                        Some(until) => level.cache.put_until(schema, r, until),
                        None => level.cache.put(schema, r),
                    };
                    level.breaker.call(put).await
                }
                None => {
                    level
                        .breaker
                        .call(level.cache.invalidate(schema, key))
                        .await
                }
            };
            level.health.record(&done);
            if let Err(e) = done {
                level.counters.write_errors.incr();
                if level.quiet() {
                    tracing::debug!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), %key, error = %e, "cache level's breaker not closed: its follow-up goes to the retry queue");
                } else {
                    tracing::warn!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), %key, error = %e, "cache invalidation failed; retrying in the background");
                }
                self.retries.push(self.chain_from(i), schema, key.clone());
                failed = failed.or(Some(i));
            }
            unfollowed.levels = i;
        }
        failed
    }

    /// Level `i` and every level in front of it, `i` first: what must be
    /// invalidated again, in that order, once level `i` answers.
    pub(super) fn chain_from(&self, i: usize) -> Vec<std::sync::Arc<dyn crate::cache::Cache>> {
        self.levels[..=i]
            .iter()
            .rev()
            .map(|l| l.cache.clone())
            .collect()
    }
}

/// The cache levels a write has not brought in line yet (the first
/// `levels`). If the write's future is dropped before they are (its caller
/// cancelled it, after the primary may have committed), they are handed to
/// the retry queue, which invalidates them from the deepest to the front.
pub(super) struct Unfollowed<'p> {
    plan: &'p Plan,
    schema: &'static Schema,
    key: &'p Key,
    pub levels: usize,
    /// Taken before the write was sent anywhere: what a row it puts into
    /// a local level is anchored on under a fleet lease.
    pub anchor: std::time::Instant,
}

impl<'p> Unfollowed<'p> {
    /// Every level of `plan`, for a write of `key` about to start.
    pub fn new(plan: &'p Plan, schema: &'static Schema, key: &'p Key) -> Self {
        Unfollowed {
            plan,
            schema,
            key,
            levels: plan.levels.len(),
            anchor: std::time::Instant::now(),
        }
    }

    /// Nothing to bring in line (the primary refused the write).
    pub fn disarm(&mut self) {
        self.levels = 0;
    }
}

impl Drop for Unfollowed<'_> {
    fn drop(&mut self) {
        if self.levels > 0 {
            tracing::debug!(target: "octopus::plan", table = self.schema.table(), key = %self.key, "write dropped before its caches followed; invalidating them in the background");
            let chain = self.plan.chain_from(self.levels - 1);
            self.plan.retries.push(chain, self.schema, self.key.clone());
        }
    }
}
