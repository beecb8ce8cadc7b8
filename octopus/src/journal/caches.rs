//! The plans' caches as the journal sees them: what replay invalidates,
//! and the keys pending when a journal opens, invalidated in the shared
//! caches so other servers stop serving rows older than those entries.

use std::sync::Arc;

use super::Journal;
use crate::fallback::CacheInvalidation;
use crate::schema::Schema;
use crate::store::normalize_key;
use crate::value::Key;

/// Entries at the end of the journal whose keys are invalidated when a
/// model registers: far more than the appends one process can have in
/// flight at once (a group commit holds up to 4,096).
const RECENT: u64 = 65_536;

impl Journal {
    /// The cache levels attached so far.
    pub(super) fn caches(&self) -> Vec<Arc<dyn CacheInvalidation>> {
        self.shared
            .caches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Invalidates `keys` of `schema` in `caches` (the ones attached last,
    /// the deepest, first).
    pub(super) async fn invalidate_in(
        caches: &[Arc<dyn CacheInvalidation>], schema: &'static Schema, keys: Vec<Key>,
    ) {
        // As the Dao spells them (a line keeps `1`, not its type).
        let mut keys: Vec<Key> = keys
            .into_iter()
            .filter_map(|k| normalize_key(schema, k).ok())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for levels in caches.iter().rev() {
            levels.invalidate(schema, &keys).await;
        }
    }

    /// In the background, invalidates in `caches` the keys of `schema`
    /// whose latest pending entry is among the last [`RECENT`] numbered: a
    /// write's caches follow before it is acknowledged, so only writes in
    /// flight at a crash (the newest entries) can have left a cached row
    /// older than their entry, which other servers would read while this
    /// one answers those keys from its journal.
    pub(super) fn invalidate_pending(
        &self, schema: &'static Schema, caches: Vec<Arc<dyn CacheInvalidation>>,
    ) {
        if caches.is_empty() || self.pending() == 0 {
            return;
        }
        let last = self
            .shared
            .last_seq
            .load(std::sync::atomic::Ordering::SeqCst);
        let keys = self
            .shared
            .index
            .keys_of(schema.table(), last.saturating_sub(RECENT));
        if keys.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(target: "octopus::journal", table = schema.table(), keys = keys.len(), "no runtime: the caches keep rows of pending keys until replay invalidates them");
            return;
        };
        tracing::info!(target: "octopus::journal", table = schema.table(), keys = keys.len(), "invalidating pending keys in the caches");
        runtime.spawn(async move { Journal::invalidate_in(&caches, schema, keys).await });
    }
}
