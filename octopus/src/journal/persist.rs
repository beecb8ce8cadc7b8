//! Making a replayed batch durable: its dead letters, then the checkpoint,
//! then the removal of the segments the checkpoint covers.

use std::sync::Arc;

use super::checkpoint::Checkpoint;
use super::dead::{self, DeadLetter};
use super::{Shared, lock, segment};
use crate::{Error, Result};

/// Makes a batch's outcome durable, on a blocking thread: its dead letters
/// (synced), then the checkpoint `cp`; then, if the checkpoint passed
/// `old_seq`, removes the segments it covers (only garbage: a failure is
/// logged, and the next checkpoint tries again). Returns `cp` as written.
pub(super) async fn persist(
    shared: &Arc<Shared>, letters: Vec<DeadLetter>, mut cp: Checkpoint, old_seq: u64,
) -> Result<Checkpoint> {
    let shared = shared.clone();
    let dir = shared.dir.clone();
    tokio::task::spawn_blocking(move || {
        {
            let _file = lock(&shared.dead_file);
            dead::append(&shared.dir, &letters)?;
        }
        cp.write(&shared.dir)
            .map_err(|e| segment::io_error(&shared.dir, None, e))?;
        if cp.seq > old_seq
            && let Err(e) = remove_replayed_segments(&shared.dir, cp.seq)
        {
            tracing::warn!(target: "octopus::journal", error = %e, "could not remove replayed segments");
        }
        Ok(cp)
    })
    .await
    .map_err(|e| Error::journal(dir, None, format!("writing the checkpoint failed: {e}")))?
}

/// Removes segments that hold nothing after `seq`.
fn remove_replayed_segments(dir: &std::path::Path, seq: u64) -> Result<()> {
    let segments = segment::list(dir)?;
    for pair in segments.windows(2) {
        if pair[1].0 <= seq + 1 {
            std::fs::remove_file(&pair[0].1).map_err(|e| segment::io_error(&pair[0].1, None, e))?;
        }
    }
    Ok(())
}
