//! A plan on several servers: the fleet lease, which keeps in-process
//! caches current across servers without telling them anything.
//!
//! An in-process cache level sees only its own server's writes. Under a
//! lease `L`, the plan keeps the promise "no read returns a row older than
//! the last acknowledged write" across servers by two rules:
//!
//! 1. **A local row lives at most `L` from its anchor**: the moment
//!    *before* the request that proved it current was sent (the primary
//!    read it came from, the shared level's lookup that hit, or, for a
//!    row this server wrote, the start of its write's cache steps). The
//!    row was current when that request was served, after the anchor.
//! 2. **A write is acknowledged `L` after its primary write and its cache
//!    steps completed.** Another server's local row older than the write
//!    was proved current before the write committed (read from the
//!    primary) or before the write's invalidation reached the shared level
//!    (read from memcached): its anchor is earlier still, so it expired
//!    before the acknowledgement.
//!
//! Single flight follows the same rule: a reader does not take the row of a
//! flight whose leader joined more than `L` before the reader began (that
//! load may predate another server's acknowledged write); it loads the
//! row itself.
//!
//! What it costs: every acknowledged write waits `L`; a local row is
//! served for at most `L` before it is read again. What it does not cover:
//! a shared level that lost an invalidation (its own failure, retried in
//! the background) serves the old row to every server until the retry
//! lands, with or without a lease.

use std::time::{Duration, Instant};

use super::{Level, Plan, PlanBuilder};

impl PlanBuilder {
    /// Runs the plan on several servers sharing its primary and its shared
    /// caches, with in-process cache levels kept current across them by a
    /// lease (see the module docs): each local row lives at most `lease`,
    /// and each acknowledged write waits `lease` before it returns. Without
    /// it, an in-process level serves a row another server changed until
    /// the row's TTL. A lease of a few tens of milliseconds keeps hot rows
    /// local while bounding what writes pay.
    pub fn fleet_lease(mut self, lease: Duration) -> Self {
        self.lease = (!lease.is_zero()).then_some(lease);
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

    /// Whether a reader that began at `began` may take the row of a flight
    /// whose leader joined at `joined`.
    pub(super) fn may_follow(&self, joined: Instant, began: Instant) -> bool {
        self.lease.is_none_or(|lease| joined + lease >= began)
    }

    /// Waits out the lease after a write's primary write and cache steps,
    /// before it is acknowledged (nothing without a lease).
    pub(super) async fn wait_out_lease(&self) {
        if let Some(lease) = self.lease {
            tokio::time::sleep(lease).await;
        }
    }

    /// The plan's fleet lease, if it has one.
    pub fn lease(&self) -> Option<Duration> {
        self.lease
    }
}
