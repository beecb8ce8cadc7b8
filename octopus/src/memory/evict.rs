//! Making room in a full shard: expired entries first, then the least
//! recently used row of a sample; an invalidation marker only when the
//! sample holds no row.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Shard, TableId};
use crate::value::Key;

/// What [`evict_one`] dropped.
pub(super) struct Evicted {
    /// Anything.
    pub dropped: bool,
    /// A live invalidation marker.
    pub marker: bool,
}

/// Drops expired entries of a sample, or else its least recently used
/// row; a live marker only if the sample holds no row.
pub(super) fn evict_one(shard: &mut Shard, now: Instant) -> Evicted {
    const SAMPLE: usize = 32;
    // The least recently used row, and marker.
    let mut victims: [Option<(TableId, Key, u64)>; 2] = [None, None];
    let mut expired: Vec<(TableId, Key)> = Vec::new();
    let mut seen = 0;
    'outer: for (table, rows) in &shard.tables {
        for (key, entry) in rows {
            if entry.expires.is_some_and(|t| t <= now) {
                expired.push((*table, key.clone()));
                continue;
            }
            let touched = entry.touched.load(Ordering::Relaxed);
            let victim = &mut victims[usize::from(entry.record.is_none())];
            if victim.as_ref().is_none_or(|(_, _, t)| touched < *t) {
                *victim = Some((*table, key.clone(), touched));
            }
            seen += 1;
            if seen >= SAMPLE {
                break 'outer;
            }
        }
    }
    let [row, marker] = victims;
    let (targets, marker): (Vec<(TableId, Key)>, bool) = match (expired.is_empty(), row, marker) {
        (false, _, _) => (expired, false),
        (true, Some((t, k, _)), _) => (vec![(t, k)], false),
        (true, None, Some((t, k, _))) => (vec![(t, k)], true),
        (true, None, None) => (Vec::new(), false),
    };
    let mut dropped = false;
    for (table, key) in targets {
        if let Some(rows) = shard.tables.get_mut(&table)
            && rows.remove(&key).is_some()
        {
            shard.len -= 1;
            dropped = true;
        }
    }
    Evicted {
        dropped,
        marker: marker && dropped,
    }
}
