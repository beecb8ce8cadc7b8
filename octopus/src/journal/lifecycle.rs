//! A journal's lifecycle and state: the writer thread's handle, the mode
//! (healthy, journaling, draining) as a value and as events, waiting for the
//! drain, and closing.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use tokio::sync::{oneshot, watch};

use super::{Journal, lock, writer};
use crate::Result;
use crate::fallback::Mode;

/// The writer thread's handle, shared by every clone of a journal: the
/// last one dropped stops the thread and waits for it (an fsync at most),
/// so the directory lock is free once the journal is gone.
pub(super) struct WriterHandle {
    pub(super) tx: mpsc::Sender<writer::Msg>,
    pub(super) exited: Mutex<Option<oneshot::Receiver<()>>>,
    pub(super) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        let _ = self.tx.send(writer::Msg::Close);
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

impl Journal {
    /// Where the journal stands: nothing pending, queueing, or draining.
    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// Changes of [`Journal::mode`], as they happen (each is also a
    /// `tracing` event, target `octopus::journal`).
    pub fn watch_mode(&self) -> watch::Receiver<Mode> {
        self.shared.mode.subscribe()
    }

    /// Completes once every entry is applied or dead-lettered.
    pub async fn drained(&self) {
        let mut rx = self.shared.mode.subscribe();
        loop {
            if self.pending() == 0 {
                return;
            }
            // Woken by every mode change; a closed journal has no sender
            // left to wait for.
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    pub(crate) fn set_mode(&self, to: Mode) {
        let from = *self.shared.mode.borrow();
        if from == to {
            return;
        }
        self.shared.mode.send_replace(to);
        match to {
            Mode::Healthy => {
                tracing::info!(target: "octopus::journal", replayed = self.shared.replayed.load(Ordering::Relaxed), "journal drained: writes go to the primary again")
            }
            Mode::Journaling => {
                tracing::warn!(target: "octopus::journal", pending = self.pending(), ?from, "journaling writes: the primary is not taking them")
            }
            Mode::Draining => {
                tracing::info!(target: "octopus::journal", pending = self.pending(), "draining the journal into the primary")
            }
        }
    }

    /// Stops the replayer (waiting for its current batch), then the writer
    /// thread, which syncs and releases the directory lock before this
    /// returns. Appends fail afterwards; the journal can be opened again at
    /// once. Every clone is closed.
    pub async fn close(&self) -> Result<()> {
        self.stop_replayer().await;
        let exited = lock(&self.writer.exited).take();
        if let Some(exited) = exited {
            let _ = self.writer.tx.send(writer::Msg::Close);
            let _ = exited.await;
        }
        Ok(())
    }
}
