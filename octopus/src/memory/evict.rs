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
    /// One past the newest write (CAS) of the entries dropped.
    pub forgotten: u64,
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
    let targets: Vec<(TableId, Key)> = match (expired.is_empty(), row.or(marker)) {
        (false, _) => expired,
        (true, Some((t, k, _))) => vec![(t, k)],
        (true, None) => Vec::new(),
    };
    let mut out = Evicted {
        dropped: false,
        forgotten: 0,
    };
    for (table, key) in targets {
        if let Some(rows) = shard.tables.get_mut(&table)
            && let Some(entry) = rows.remove(&key)
        {
            shard.len -= 1;
            out.dropped = true;
            out.forgotten = out.forgotten.max(entry.cas + 1);
        }
    }
    out
}
