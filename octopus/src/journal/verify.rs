//! The checkpoint checked against the segments on open. A checkpoint that
//! does not fit them is an error naming its file, never a silent replay of
//! entries already applied (which could undo newer writes) or a silent drop
//! of pending ones.
//!
//! - **Missing.** A journal is created with its checkpoint, and its lines
//!   carry group commit marks, so a missing checkpoint beside marked lines
//!   was lost: an error. A journal written before both (no marks, from 1)
//!   had no checkpoint until its first replay: it replays from 1, with a
//!   warning.
//! - **Behind the first entry.** Entries between them are gone: an error.
//! - **Ahead of the last entry.** Replay applied entries a power loss then
//!   took from the segments (possible under `Durability::Interval` or
//!   `None`): accepted, with a warning, only from a checksummed checkpoint
//!   (one this version wrote); new entries then start a new segment, so the
//!   gap sits between segments where recovery accepts it. "Ahead" counts
//!   the per-table marks and `+seq` lines too: a new entry must never get a
//!   number the checkpoint already calls done.

use std::path::Path;

use super::checkpoint::{self, Checkpoint, Stored};
use super::recovery::Recovered;
use super::segment;
use crate::{Error, Result};

/// A checkpoint that fits the segments.
pub(super) struct Verified {
    pub checkpoint: Checkpoint,
    /// Whether the next entry must start a new segment (it would not
    /// follow the last segment's last entry).
    pub new_segment: bool,
}

pub(super) fn verify(
    dir: &Path, stored: Option<Stored>, recovered: &Recovered,
) -> Result<Verified> {
    let path = dir.join(checkpoint::FILE);
    let wrong = |reason: String| Error::journal(&path, None, reason);
    let Some(stored) = stored else {
        if let Some(first) = recovered.first {
            if first != 1 || recovered.marked {
                return Err(wrong(format!(
                    "the checkpoint is missing, but the journal holds entries {first} to {}: \
                     some may have been applied already, and applying them again could undo \
                     newer writes. Restore the checkpoint, or write one holding the last \
                     sequence number the primary has applied (0 if none)",
                    recovered.last.unwrap_or(first)
                )));
            }
            tracing::warn!(target: "octopus::journal", dir = %dir.display(), "journal written before checkpoints were created with it, without one: replaying it from its first entry");
        }
        let mut checkpoint = Checkpoint::default();
        checkpoint
            .write(dir)
            .map_err(|e| segment::io_error(&path, None, e))?;
        return Ok(Verified {
            checkpoint,
            new_segment: false,
        });
    };
    let cp = stored.checkpoint;
    if let Some(first) = recovered.first
        && first > cp.seq + 1
    {
        return Err(wrong(format!(
            "the checkpoint covers entries up to {}, but the journal's first entry is {first}: \
             entries {} to {} are missing",
            cp.seq,
            cp.seq + 1,
            first - 1
        )));
    }
    let last = recovered.last.unwrap_or(0);
    let high = cp.highest();
    let new_segment = high > last;
    if new_segment {
        if !stored.checksummed {
            return Err(wrong(format!(
                "the checkpoint covers entries up to {high}, past the journal's last entry ({last}), \
                 and carries no checksum: it was not written by this journal"
            )));
        }
        tracing::warn!(target: "octopus::journal", dir = %dir.display(), checkpoint = high, last, "the checkpoint is past the journal's last entry: entries it covers were applied, then lost from the journal's files (a power loss under Durability::Interval or None); new entries start a new segment");
    }
    Ok(Verified {
        checkpoint: cp,
        new_segment,
    })
}
