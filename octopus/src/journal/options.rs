//! A journal's settings.

use std::time::Duration;

/// When an entry reaches the disk relative to its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Synced before acknowledging (group commit). The default, and the
    /// only mode that keeps every acknowledged write through a power loss.
    #[default]
    Fsync,
    /// Synced at most this often; acknowledged after the OS has the write.
    /// Survives a process crash, not a power loss.
    Interval(Duration),
    /// Never synced by Octopus. Survives a process crash only.
    None,
}

/// Settings of a [`Journal`](super::Journal).
#[derive(Debug, Clone)]
pub struct JournalOptions {
    pub(super) durability: Durability,
    pub(super) segment_bytes: u64,
    pub(super) replay_batch: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            durability: Durability::Fsync,
            segment_bytes: 64 * 1024 * 1024,
            replay_batch: 4000,
        }
    }
}

impl JournalOptions {
    /// Sync policy (default [`Durability::Fsync`]).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Entries replayed per batch at most, each batch followed by a
    /// checkpoint (default 4000). Replay halves it while batches time out
    /// and grows it back as they succeed.
    pub fn replay_batch(mut self, n: usize) -> Self {
        self.replay_batch = n.max(1);
        self
    }

    /// Size at which a new segment is started (default 64 MiB).
    pub fn segment_bytes(mut self, n: u64) -> Self {
        self.segment_bytes = n.max(1);
        self
    }
}
