//! A journal's lifecycle and state: the writer thread's handle, the mode
//! (healthy, journaling, draining) as a value and as events, waiting for the
//! drain, and closing.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use tokio::sync::watch;

use super::{Journal, lock, writer};
use crate::Result;
use crate::fallback::Mode;

/// The writer thread's handle, shared by every clone of a journal: the
/// last one dropped stops the thread and waits for it (an fsync at most),
/// so the directory lock is free once the journal is gone.
pub(super) struct WriterHandle {
    pub(super) tx: mpsc::Sender<writer::Msg>,
    pub(super) exited: watch::Receiver<bool>,
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

    /// Completes once every entry is applied or dead-lettered (or the
    /// journal is closed).
    pub async fn drained(&self) {
        loop {
            let notified = self.shared.drain.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending() == 0 || self.shared.closed.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Counts `n` entries done (applied, dead-lettered, or failed to
    /// append), waking whoever waits for the drain.
    pub(super) fn finished(&self, n: u64) {
        if n > 0 {
            self.retire(n);
            self.wake_drained();
        }
    }

    /// Counts `n` entries done without waking anyone; returns how many
    /// are still pending.
    pub(super) fn retire(&self, n: u64) -> u64 {
        let before = self
            .shared
            .outstanding
            .fetch_sub(n as i64, Ordering::SeqCst);
        (before - n as i64).max(0) as u64
    }

    /// Wakes whoever waits for the drain (they check the count again).
    pub(super) fn wake_drained(&self) {
        self.shared.drain.notify_waiters();
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
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.drain.notify_waiters();
        self.stop_replayer().await;
        let _ = self.writer.tx.send(writer::Msg::Close);
        let mut exited = self.writer.exited.clone();
        let _ = exited.wait_for(|done| *done).await;
        Ok(())
    }
}
