//! The read path: pending writes first, then cache levels in order, then
//! the primary; guarded fills and single flight.

use std::time::Instant;

use crate::Result;
use crate::cache::{FillToken, Lookup};
use crate::flight::{self, Role};
use crate::schema::Schema;
use crate::value::{Key, Record};

use super::{Level, Plan};
use crate::store::check_record;

impl Plan {
    /// The pending write of `key` in the fallback, if it has one.
    async fn pending(&self, schema: &'static Schema, key: &Key) -> Result<Option<Option<Record>>> {
        if !self.fallback.has_pending() {
            return Ok(None);
        }
        self.fallback.pending(schema, key).await
    }

    /// Reads `key` through the cache levels, then the primary.
    pub async fn read(&self, schema: &'static Schema, key: &Key) -> Result<Option<Record>> {
        let began = Instant::now();
        if let Some(pending) = self.pending(schema, key).await? {
            return Ok(pending);
        }
        let mut tokens: Vec<Option<FillToken>> = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            let sent = Instant::now();
            match self.lookup_in(level, schema, key).await {
                Ok(Lookup::Hit(record)) if check_record(schema, &record).is_err() => {
                    tokens.push(self.drop_undecodable(level, schema, key, &record).await);
                }
                Ok(Lookup::Hit(_)) if !self.trusts(level, schema, key) => {
                    tokens.push(self.distrusted(level, schema, key).await);
                }
                Ok(Lookup::Hit(record)) => {
                    level.counters.hits.incr();
                    if self.fills_from(level) {
                        self.fill(schema, &record, &tokens, sent).await;
                    }
                    return Ok(Some(record));
                }
                Ok(Lookup::Miss(token)) => {
                    level.counters.misses.incr();
                    tokens.push(Some(token));
                }
                Err(e) => {
                    level.counters.skipped.incr();
                    level.log_skip(schema, &e);
                    tokens.push(None);
                }
            }
        }
        if self.levels.is_empty() {
            // Nothing to fill: single flight would only add a lock and a map
            // entry to every read.
            return self.primary_get(schema, key).await;
        }
        let out = self.load(schema, key, &tokens, began).await;
        self.or_stale(schema, key, out).await
    }

    /// Loads `key` from the primary (or waits for another reader's load of
    /// it, one that may be taken by a read that began at `began`) and fills
    /// the levels whose tokens are given.
    async fn load(
        &self, schema: &'static Schema, key: &Key, tokens: &[Option<FillToken>], began: Instant,
    ) -> Result<Option<Record>> {
        match self.flights.join(schema, key) {
            Role::Leader(leader) => self.lead(leader, schema, key, tokens).await,
            Role::Follower(rx, joined) if self.may_follow(joined, began) => {
                match tokio::time::timeout(self.herd_wait, flight::wait(rx)).await {
                    Ok(Some(found)) => {
                        self.counters.herd_followers.incr();
                        Ok(found)
                    }
                    _ => self.load_alone(schema, key, tokens).await,
                }
            }
            // Too old to take: this reader leads a new flight.
            Role::Follower(..) => {
                let leader = self.flights.lead(schema, key);
                self.lead(leader, schema, key, tokens).await
            }
        }
    }

    /// Loads `key` as `leader` of its flight and lands the result for the
    /// flight's followers.
    async fn lead(
        &self, leader: flight::Leader<'_>, schema: &'static Schema, key: &Key,
        tokens: &[Option<FillToken>],
    ) -> Result<Option<Record>> {
        let out = self.load_alone(schema, key, tokens).await;
        leader.land(match &out {
            Ok(found) => Ok(found.clone()),
            Err(_) => Err(()),
        });
        out
    }

    /// Reads `key` from the primary and fills the levels whose tokens are
    /// given.
    async fn load_alone(
        &self, schema: &'static Schema, key: &Key, tokens: &[Option<FillToken>],
    ) -> Result<Option<Record>> {
        let sent = Instant::now();
        let out = self.primary_get(schema, key).await;
        if let Ok(Some(record)) = &out {
            self.fill(schema, record, tokens, sent).await;
        }
        out
    }

    async fn primary_get(&self, schema: &'static Schema, key: &Key) -> Result<Option<Record>> {
        self.checked(schema).await?;
        self.counters.primary_reads.incr();
        self.read_breaker.call(self.primary.get(schema, key)).await
    }

    async fn primary_get_many(
        &self, schema: &'static Schema, keys: &[Key],
    ) -> Result<Vec<Option<Record>>> {
        self.checked(schema).await?;
        self.counters.primary_reads.incr();
        self.read_breaker
            .call(self.primary.get_many(schema, keys))
            .await
    }

    /// Reads `keys` (one slot per key, in order), each level asked once for
    /// what is still missing.
    pub async fn read_many(
        &self, schema: &'static Schema, keys: &[Key],
    ) -> Result<Vec<Option<Record>>> {
        let mut found: Vec<Option<Record>> = vec![None; keys.len()];
        // Per key, the tokens of the levels that missed it.
        let mut tokens: Vec<Vec<Option<FillToken>>> = vec![Vec::new(); keys.len()];
        let mut missing: Vec<usize> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            match self.pending(schema, key).await? {
                Some(pending) => found[i] = pending,
                None => missing.push(i),
            }
        }
        for level in &self.levels {
            if missing.is_empty() {
                break;
            }
            let ask: Vec<Key> = missing.iter().map(|&i| keys[i].clone()).collect();
            let sent = Instant::now();
            match self.lookup_many_in(level, schema, &ask).await {
                Ok(lookups) => {
                    let mut still = Vec::with_capacity(missing.len());
                    for (&i, lookup) in missing.iter().zip(lookups) {
                        match lookup {
                            Lookup::Hit(record) if check_record(schema, &record).is_err() => {
                                let token = self
                                    .drop_undecodable(level, schema, &keys[i], &record)
                                    .await;
                                tokens[i].push(token);
                                still.push(i);
                            }
                            Lookup::Hit(_) if !self.trusts(level, schema, &keys[i]) => {
                                tokens[i].push(self.distrusted(level, schema, &keys[i]).await);
                                still.push(i);
                            }
                            Lookup::Hit(record) => {
                                level.counters.hits.incr();
                                if self.fills_from(level) {
                                    self.fill(schema, &record, &tokens[i], sent).await;
                                }
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
                    level.log_skip(schema, &e);
                    for &i in &missing {
                        tokens[i].push(None);
                    }
                }
            }
        }
        if !missing.is_empty() {
            let ask: Vec<Key> = missing.iter().map(|&i| keys[i].clone()).collect();
            let sent = Instant::now();
            let rows = match self.primary_get_many(schema, &ask).await {
                Ok(rows) => rows,
                Err(e) => {
                    // Served stale: nothing is filled.
                    let stale = self.stale_many(schema, &ask, e).await?;
                    for (&i, row) in missing.iter().zip(stale) {
                        found[i] = Some(row);
                    }
                    return Ok(found);
                }
            };
            for (&i, row) in missing.iter().zip(rows) {
                if let Some(record) = &row {
                    self.fill(schema, record, &tokens[i], sent).await;
                }
                found[i] = row;
            }
        }
        Ok(found)
    }

    /// A cached value that does not fit the model (a column of the wrong
    /// type): counted, dropped from the level, and a miss there; the token
    /// of the lookup after the drop lets the primary's row replace it.
    async fn drop_undecodable(
        &self, level: &Level, schema: &'static Schema, key: &Key, record: &Record,
    ) -> Option<FillToken> {
        level.counters.undecodable.incr();
        let why = check_record(schema, record).err().map(|e| e.to_string());
        tracing::warn!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), %key, why, "cached value does not fit the model; dropped, and read from the primary");
        if let Err(e) = level.cache.invalidate(schema, key).await {
            level.counters.write_errors.incr();
            tracing::warn!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), %key, error = %e, "dropping an undecodable cached value failed");
            return None;
        }
        match level.cache.lookup(schema, key).await {
            Ok(Lookup::Miss(token)) => Some(token),
            _ => None,
        }
    }

    /// Fills the levels whose tokens are given (a level that failed its
    /// lookup has none and is left alone) with `record`, proved current by
    /// a request sent at `anchor` (see `fleet.rs`).
    async fn fill(
        &self, schema: &'static Schema, record: &Record, tokens: &[Option<FillToken>],
        anchor: Instant,
    ) {
        for (level, token) in self.levels.iter().zip(tokens) {
            let Some(token) = token else { continue };
            let fill = match self.local_until(level, anchor) {
                Some(until) => level.cache.fill_until(schema, record, *token, until),
                None => level.cache.fill(schema, record, *token),
            };
            let filled = level.breaker.call(fill).await;
            level.health.record(&filled);
            match filled {
                Ok(true) => level.counters.fills.incr(),
                Ok(false) => level.counters.fill_races_lost.incr(),
                Err(e) => {
                    level.counters.fill_errors.incr();
                    tracing::warn!(target: "octopus::plan", cache = level.cache.name(), table = schema.table(), error = %e, "cache fill failed");
                }
            }
        }
    }
}
