//! The drainer every server runs: whoever holds the lease applies the
//! stream to the primary (one pass at a time, see `pass`). The lease is a
//! key in a key-value bucket whose entries expire after the lease time; the
//! holder renews it by revision before every table it applies, gives it up
//! when it cannot make progress (the primary does not answer it, or only
//! tables it has no model of are left), and deletes it, by revision, when
//! it stops.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use octopus::{CircuitBreaker, Error, Mode, Store};
use tokio::time::Instant;

use super::JetStreamJournal;
use crate::lock::MutexExt;

/// How often an idle drainer looks at the stream.
const POLL: Duration = Duration::from_millis(100);
/// Backoff after a failed pass, doubling up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Passes in a row the primary may fail before the holder gives the lease
/// up (another server may reach the primary).
const FAILURES_BEFORE_YIELD: u32 = 5;
/// How long a server that gave the lease up leaves it to the others.
const HOLD_OFF: Duration = Duration::from_millis(300);
/// The lease's key in its bucket.
const LEASE_KEY: &str = "drainer";

/// What a drainer remembers between passes.
#[derive(Default)]
pub(super) struct State {
    /// The lease's revision while this server holds it.
    pub lease: Option<u64>,
    /// Failed passes in a row.
    failures: u32,
    /// This server gave the lease up: not before this does it try again.
    hold_off: Option<Instant>,
    /// Tables whose primary table was checked against their model.
    pub ensured: HashSet<&'static str>,
    /// Entries applied or dead-lettered whose messages may still be in the
    /// stream (their removal failed): removed, never applied again.
    pub done: BTreeSet<u64>,
    /// Entries dead-lettered: entries written after them are refused too.
    pub refused: HashSet<u64>,
}

/// How a pass ended without an error.
pub(super) enum Passed {
    /// It did this many entries.
    Did(usize),
    /// Only entries of tables no model here knows are left.
    Blocked,
}

impl JetStreamJournal {
    /// Runs until the journal is closed.
    pub(super) async fn drain(self, primary: Arc<dyn Store>, breaker: Arc<CircuitBreaker>) {
        let mut state = State::default();
        let mut backoff = MIN_BACKOFF;
        while !self.inner.closed.load(Ordering::SeqCst) {
            let pending = match self.pending_now().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(journal = %self.inner.name, error = %e, "cannot read the stream's state");
                    self.idle(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if pending == 0 {
                self.set_mode(Mode::Healthy);
                self.idle(POLL).await;
                continue;
            }
            if self.mode() == Mode::Healthy {
                self.set_mode(Mode::Journaling);
            }
            if !self.hold_lease(&mut state).await {
                self.idle(POLL).await;
                continue;
            }
            match self.pass(primary.as_ref(), &mut state).await {
                Ok(Passed::Did(0)) => self.idle(POLL).await,
                Ok(Passed::Did(_)) => {
                    // A pass that applied proves the primary is back: the
                    // plan's writes need not wait out the breaker.
                    breaker.store_answered();
                    (backoff, state.failures) = (MIN_BACKOFF, 0);
                }
                Ok(Passed::Blocked) => self.yield_lease(&mut state).await,
                Err(e) => {
                    self.failed(&e, &mut state).await;
                    self.idle(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Some(revision) = state.lease {
            let _ = self
                .inner
                .lease
                .delete_expect_revision(LEASE_KEY, Some(revision))
                .await;
        }
    }

    /// Records a failed pass; gives the lease up after too many.
    async fn failed(&self, e: &Error, state: &mut State) {
        if e.is_unavailable() {
            self.set_mode(Mode::Journaling);
            state.failures += 1;
            if state.failures >= FAILURES_BEFORE_YIELD {
                self.yield_lease(state).await;
            }
        } else {
            tracing::error!(journal = %self.inner.name, error = %e, "replay from the stream is held up");
            *self.inner.replay_error.locked() = Some(e.to_string());
        }
    }

    /// Waits `d`, or less if a write or a close wakes it.
    async fn idle(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.inner.wake.notified() => {}
        }
    }

    /// Gives the lease up (by revision) and keeps away from it for a few
    /// polls, so another server (one that may reach the primary, or knows
    /// the waiting tables' models) can take it; if none does, this one
    /// takes it back.
    async fn yield_lease(&self, state: &mut State) {
        if let Some(revision) = state.lease.take() {
            let _ = self
                .inner
                .lease
                .delete_expect_revision(LEASE_KEY, Some(revision))
                .await;
            tracing::info!(journal = %self.inner.name, "gave the drainer's lease up");
        }
        state.failures = 0;
        state.hold_off = Some(Instant::now() + HOLD_OFF);
    }

    /// Takes or renews the lease; whether this server holds it.
    pub(super) async fn hold_lease(&self, state: &mut State) -> bool {
        if state.hold_off.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        let owner = bytes::Bytes::from(self.inner.owner.clone());
        if let Some(revision) = state.lease {
            match self
                .inner
                .lease
                .update(LEASE_KEY, owner.clone(), revision)
                .await
            {
                Ok(next) => {
                    state.lease = Some(next);
                    return true;
                }
                Err(_) => state.lease = None,
            }
        }
        match self.inner.lease.create(LEASE_KEY, owner).await {
            Ok(revision) => {
                // Entries written after one a former holder refused are
                // refused too: the refusals are in the dead-letter stream.
                match self.dead_letters().await {
                    Ok(letters) => state.refused.extend(letters.iter().map(|l| l.entry.seq)),
                    Err(e) => {
                        tracing::warn!(journal = %self.inner.name, error = %e, "cannot read the dead letters: not draining");
                        let _ = self
                            .inner
                            .lease
                            .delete_expect_revision(LEASE_KEY, Some(revision))
                            .await;
                        return false;
                    }
                }
                tracing::info!(journal = %self.inner.name, owner = %self.inner.owner, "this server drains the stream");
                state.lease = Some(revision);
                true
            }
            Err(_) => false,
        }
    }
}
