//! Stale-if-error: while the primary is unavailable, a read that every
//! level missed may be answered by a row a level still holds past its time
//! to live (RFC 5861's `stale-if-error`, for rows). Off by default.
//!
//! What it keeps of the read promise: a level holds a row past its TTL only
//! if nothing wrote over it since it was cached (this plan's writes leave a
//! marker or the new row in every level, journaled writes included, and the
//! fallback's pending writes are read before any level), so a stale row is
//! never older than this server's last acknowledged write of the key. What
//! it relaxes, without a fleet lease: another server's write reaches this
//! server's in-process cache only through its TTL, and a stale row extends
//! that window by the level's stale window (`MemoryOptions::stale_for`).
//! Under a fleet lease, local levels serve no stale rows (past its lease a
//! local row may be one another server overwrote; `fleet.rs`). A row
//! served stale is never filled into any level, so it stops being served
//! once the primary answers.

use crate::store::check_record;
use crate::value::{Key, Record};
use crate::{Error, Result, Schema};

use super::{Plan, PlanBuilder};

impl PlanBuilder {
    /// While the primary is unavailable (or its read breaker is open), a
    /// read that no level answers may be served a row a level still holds
    /// past its time to live: see the module docs of what that promises.
    /// Only levels that keep expired rows can answer (the in-process cache
    /// with [`MemoryOptions::stale_for`](crate::MemoryOptions::stale_for));
    /// each row served so is counted in its level's
    /// [`LevelStats::stale_served`](crate::LevelStats::stale_served).
    /// Default: off.
    pub fn stale_if_error(mut self, on: bool) -> Self {
        self.stale_if_error = on;
        self
    }
}

impl Plan {
    /// `out`, or, if it is the primary's [`Error::Unavailable`] and the
    /// plan serves stale rows, a stale row of `key`.
    pub(super) async fn or_stale(
        &self, schema: &'static Schema, key: &Key, out: Result<Option<Record>>,
    ) -> Result<Option<Record>> {
        match out {
            Err(e) if self.serves_stale(&e) => match self.stale(schema, key).await {
                Some((level, record)) => {
                    self.served_stale(level, schema, key);
                    Ok(Some(record))
                }
                None => Err(e),
            },
            out => out,
        }
    }

    /// Stale rows of every one of `keys` in place of the primary's error
    /// `e`, or `e` if one has none (or the plan serves no stale rows).
    pub(super) async fn stale_many(
        &self, schema: &'static Schema, keys: &[Key], e: Error,
    ) -> Result<Vec<Record>> {
        if !self.serves_stale(&e) {
            return Err(e);
        }
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            match self.stale(schema, key).await {
                Some(hit) => found.push(hit),
                None => return Err(e),
            }
        }
        Ok(keys
            .iter()
            .zip(found)
            .map(|(key, (level, record))| {
                self.served_stale(level, schema, key);
                record
            })
            .collect())
    }

    fn serves_stale(&self, e: &Error) -> bool {
        self.stale_if_error && e.is_unavailable() && !self.levels.is_empty()
    }

    /// The first level's stale row of `key` that fits the model, with the
    /// level's index.
    async fn stale(&self, schema: &'static Schema, key: &Key) -> Option<(usize, Record)> {
        for (i, level) in self.levels.iter().enumerate() {
            // Under a fleet lease a local row past its life may be one
            // another server overwrote (see `fleet.rs`).
            if self.lease.is_some() && level.cache.is_local() {
                continue;
            }
            let lookup = level.cache.lookup_stale(schema, key);
            if let Ok(Some(record)) = level.breaker.call(lookup).await
                && check_record(schema, &record).is_ok()
                && self.trusts(level, schema, key)
            {
                return Some((i, record));
            }
        }
        None
    }

    fn served_stale(&self, level: usize, schema: &'static Schema, key: &Key) {
        let level = &self.levels[level];
        level.counters.stale_served.incr();
        tracing::debug!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), %key, "primary unavailable: served a row past its time to live");
    }
}
