//! A plan on several servers: the fleet lease, which keeps in-process
//! caches current across servers without telling them anything.
//!
//! An in-process cache level sees only its own server's writes. Under a
//! lease `L`, the plan keeps the promise "no read returns a row older than
//! the last acknowledged write" across servers by these rules:
//!
//! 1. **A local row lives at most `L` from its anchor**: a moment *before*
//!    the request that proved it current was sent. For a filled row, the
//!    primary read it came from or the shared level's lookup that hit; for
//!    a row this server wrote (write-through, or a journaled write), the
//!    moment before the write was sent to the primary or the fallback.
//! 2. **A write is acknowledged `L` after its primary write (or journal
//!    append) and its cache steps completed.** Another server's local row
//!    older than the write was proved current before the write committed
//!    (read from the primary) or before its invalidation reached the shared
//!    level (read from memcached): its anchor is earlier still, so it
//!    expired before the acknowledgement.
//! 3. **A local hit fills nothing** (its anchor is older than the lookup: a
//!    fill would extend its life, and, into a shared level, write it over
//!    another server's marker), and **stale-if-error skips local levels**
//!    (past its lease a local row may be one another server overwrote).
//! 4. **Single flight**: a reader does not take the row of a flight whose
//!    leader joined more than `L` before the reader began (that load may
//!    predate another server's acknowledged write); it leads a new flight.
//!
//! What it costs: every acknowledged write waits `L`; a local row is
//! served for at most `L` before it is read again. A zero lease keeps no
//! local rows at all.
//!
//! 5. **A shared level's failed step is tried once more** before the lease
//!    wait (directly, bounded by `L`, with every level in front of it): a
//!    writer whose breaker for memcached is still open after memcached came
//!    back must not leave the old row there for the servers that already
//!    read it again.
//!
//! 6. **A shared level that failed is distrusted for a while after it
//!    answers again**, so other servers' queued retries land before its
//!    rows are served again (`trust.rs`).
//!
//! What it does not cover, with or without a lease: a shared level that
//! holds an old row after all (a true partition, retried in the
//! background, or a server that never saw the level fail; an evicted
//! marker followed by a late `add`; two servers' write-through puts of one
//! key) serves it to every server until the retry lands or its TTL, and
//! local rows filled from it live `L` more. A
//! journaled write reaches other servers through the journal's pending
//! reads (JetStream: polled every 100 ms) or the shared level's put: a
//! server whose last poll predates the entry and whose shared level
//! missed the put reads the primary's older row. Leases are measured on
//! the monotonic clock, which stops while a host is suspended.

use std::time::{Duration, Instant};

use super::{Level, Plan, PlanBuilder};
use crate::schema::Schema;
use crate::value::Key;

impl PlanBuilder {
    /// Runs the plan on several servers sharing its primary and its shared
    /// caches, with in-process cache levels kept current across them by a
    /// lease (the rules, and what they do not cover, are in
    /// `octopus/src/plan/fleet.rs` and ARCHITECTURE.md): each local row
    /// lives at most `lease`, and each acknowledged write waits `lease`
    /// before it returns. Without it, an in-process level serves a row
    /// another server changed until the row's TTL. A lease of a few tens of
    /// milliseconds keeps hot rows local while bounding what writes pay;
    /// zero keeps no local rows.
    pub fn fleet_lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }
}

impl Plan {
    /// When a row proved current at `anchor` must leave `level`, if the
    /// level is local and the plan has a lease.
    pub(super) fn local_until(&self, level: &Level, anchor: Instant) -> Option<Instant> {
        match self.lease {
            Some(lease) if level.cache.is_local() => Some(anchor + lease),
            _ => None,
        }
    }

    /// Whether a hit at `level` fills the levels in front of it. Under a
    /// lease a local hit fills nothing: its row's anchor is older than the
    /// lookup, so it would extend the row's life in a local level, and in
    /// a shared level it would write the row over another server's marker.
    pub(super) fn fills_from(&self, level: &Level) -> bool {
        self.lease.is_none() || !level.cache.is_local()
    }

    /// Whether a reader that began at `began` may take the row of a flight
    /// whose leader joined at `joined`.
    pub(super) fn may_follow(&self, joined: Instant, began: Instant) -> bool {
        self.lease.is_none_or(|lease| joined + lease >= began)
    }

    /// Waits out the lease after a write's primary write and cache steps,
    /// before it is acknowledged (nothing without a lease). If a shared
    /// level's step failed (`failed`, the deepest such level, often one
    /// whose breaker is still open after the cache came back), it is
    /// invalidated once more first, directly and bounded by the lease,
    /// with every level in front of it: another server that reaches the
    /// cache must not read the old row there after the acknowledgement.
    pub(super) async fn wait_out_lease(
        &self, schema: &'static Schema, key: &Key, failed: Option<usize>,
    ) {
        let Some(lease) = self.lease else { return };
        if let Some(i) = failed.filter(|&i| !self.levels[i].cache.is_local()) {
            let chain = self.chain_from(i);
            let again = async {
                for cache in &chain {
                    cache.invalidate(schema, key).await?;
                }
                Ok::<(), crate::Error>(())
            };
            let landed = tokio::time::timeout(lease, again).await;
            if let Ok(out) = &landed {
                self.levels[i].health.record(out);
            }
            match landed {
                Ok(Ok(())) => {
                    tracing::debug!(target: "octopus::plan", table = schema.table(), %key, "a shared level's skipped invalidation reached it before the acknowledgement")
                }
                _ => {
                    tracing::debug!(target: "octopus::plan", table = schema.table(), %key, "a shared level's invalidation still does not land: the retry queue keeps it")
                }
            }
        }
        tokio::time::sleep(lease).await;
    }

    /// The plan's fleet lease, if it has one.
    pub fn lease(&self) -> Option<Duration> {
        self.lease
    }
}
