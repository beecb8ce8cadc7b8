//! The [`Cache`] trait: what a store in front of the primary offers so fills
//! can be guarded against racing invalidations.

use std::time::Instant;

use crate::Result;
use crate::schema::Schema;
use crate::store::BoxFuture;
use crate::value::{Key, Record};

/// What a cache lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The cached row.
    Hit(Record),
    /// Nothing usable; the token lets the reader fill the key later, and only
    /// if nothing touched it since this lookup.
    Miss(FillToken),
}

/// The state of a key at a missed lookup, against which a fill is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillToken {
    /// The key held nothing: a fill succeeds only if it still holds nothing
    /// (memcached `add`).
    Absent,
    /// The key held an invalidation marker with this CAS value: a fill
    /// succeeds only if the marker is unchanged.
    Cas(u64),
}

/// A store used as a cache by a [`crate::Plan`].
///
/// The guarantee a cache gives: **an invalidation that races a fill always
/// wins.** A reader looks a key up (miss, with a [`FillToken`]), loads the row
/// from the primary, and fills with the token; a writer that changed the
/// primary in between has invalidated the key, which leaves a short-lived
/// marker (with a new CAS value), so the reader's fill finds the key changed
/// and is dropped. The next read loads the new row. This is the protocol of
/// Shopify's identity_cache: markers plus CAS / `add` fills.
pub trait Cache: Send + Sync + 'static {
    /// A name for logs, stats and errors.
    fn name(&self) -> &str;

    /// Looks `key` up.
    fn lookup<'a>(&'a self, schema: &'static Schema, key: &'a Key)
    -> BoxFuture<'a, Result<Lookup>>;

    /// Looks several keys up, one result per key in order, batched where the
    /// backend allows.
    fn lookup_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Lookup>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.lookup(schema, key).await?);
            }
            Ok(out)
        })
    }

    /// Stores `record` if its key is unchanged since the lookup that gave
    /// `token`; returns whether it was stored (`false`: a race was lost and
    /// the newer state kept).
    fn fill<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, token: FillToken,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Stores `record` unconditionally (write-through after a primary write).
    fn put<'a>(&'a self, schema: &'static Schema, record: &'a Record) -> BoxFuture<'a, Result<()>>;

    /// The longest one call of this level may take (its deadline), if it
    /// has one. A plan gives a lookup up after half of it and reads on
    /// from the next level or the primary: a hanging cache costs a read
    /// half its deadline, and its breaker counts the lookup as failed.
    /// Default `None` (a level that answers at once, or has no deadline).
    fn deadline(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether this level lives in this process only (the in-process
    /// cache): other servers' writes never reach it, so in a plan with a
    /// fleet lease ([`crate::PlanBuilder::fleet_lease`]) its rows live no
    /// longer than the lease. Default `false` (a cache every server shares).
    fn is_local(&self) -> bool {
        false
    }

    /// [`fill`](Self::fill), with the row kept no later than `until`: a
    /// local level's fill under a fleet lease. The default ignores `until`
    /// (a shared level is invalidated by every server's writes).
    fn fill_until<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, token: FillToken, until: Instant,
    ) -> BoxFuture<'a, Result<bool>> {
        let _ = until;
        self.fill(schema, record, token)
    }

    /// [`put`](Self::put), with the row kept no later than `until` (see
    /// [`fill_until`](Self::fill_until)).
    fn put_until<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, until: Instant,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = until;
        self.put(schema, record)
    }

    /// A row this level still holds for `key` past its time to live, for a
    /// plan that serves stale rows while its primary is unavailable
    /// ([`crate::PlanBuilder::stale_if_error`]). Only a row nothing has
    /// written over since it was cached qualifies: never one an
    /// invalidation or a put replaced. The default holds none (memcached
    /// drops rows at their TTL itself).
    fn lookup_stale<'a>(
        &'a self, _schema: &'static Schema, _key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async { Ok(None) })
    }

    /// Drops any cached row for `key` and leaves a marker, so every fill
    /// based on an earlier lookup fails.
    fn invalidate<'a>(&'a self, schema: &'static Schema, key: &'a Key)
    -> BoxFuture<'a, Result<()>>;
}
