//! A circuit breaker with resilience4j's semantics, in front of a primary.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

/// Settings of a [`CircuitBreaker`]. The defaults suit a database primary.
///
/// In a config file (`[default.breaker]`) the keys are the fields' names,
/// durations are written `"500ms"`, `"5s"` or `"5m"`, and unset ones keep
/// their defaults.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerOptions {
    /// Calls remembered in the count-based sliding window (default 20).
    pub window: usize,
    /// Calls the window must hold before rates are evaluated (default 10;
    /// a value above `window` counts as `window`, as in resilience4j).
    pub minimum_calls: usize,
    /// Failure rate (0.0–1.0) at or above which the breaker opens
    /// (default 0.5).
    pub failure_rate: f64,
    /// A call taking at least this long is slow (default 2 s).
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub slow_call_duration: Duration,
    /// Slow-call rate (0.0–1.0) at or above which the breaker opens
    /// (default 1.0: only when every call in the window is slow).
    pub slow_call_rate: f64,
    /// Time the breaker stays open before letting probes through
    /// (default 5 s).
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub open_wait: Duration,
    /// Probe calls admitted while half-open (default 3).
    pub half_open_calls: usize,
    /// Longest time the breaker stays half-open waiting for its probes to
    /// finish before it opens again (default 10 s): a half-open state can
    /// never get stuck.
    #[serde(deserialize_with = "crate::config::deserialize_duration")]
    pub half_open_max_wait: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions {
            window: 20,
            minimum_calls: 10,
            failure_rate: 0.5,
            slow_call_duration: Duration::from_secs(2),
            slow_call_rate: 1.0,
            open_wait: Duration::from_secs(5),
            half_open_calls: 3,
            half_open_max_wait: Duration::from_secs(10),
        }
    }
}

impl BreakerOptions {
    /// Checks the settings, naming the one that is out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: &str| Err(Error::config(format!("breaker.{key}"), reason));
        if self.window == 0 {
            return bad("window", "must be at least 1");
        }
        if self.minimum_calls == 0 {
            return bad("minimum_calls", "must be at least 1");
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return bad("failure_rate", "must be in (0, 1]");
        }
        if !(self.slow_call_rate > 0.0 && self.slow_call_rate <= 1.0) {
            return bad("slow_call_rate", "must be in (0, 1]");
        }
        if self.half_open_calls == 0 {
            return bad("half_open_calls", "must be at least 1");
        }
        if self.half_open_max_wait.is_zero() {
            return bad("half_open_max_wait", "must be positive");
        }
        Ok(())
    }
}

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through and are counted.
    Closed,
    /// Calls fail fast without touching the store.
    Open,
    /// A bounded number of probe calls go through; their outcome decides.
    HalfOpen,
}

/// A cheap copy of a breaker's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSnapshot {
    /// The current state.
    pub state: BreakerState,
    /// Calls in the sliding window (closed state).
    pub window_calls: usize,
    /// Failed calls in the window.
    pub window_failures: usize,
    /// Slow calls in the window.
    pub window_slow: usize,
    /// Calls refused without touching the store, since creation.
    pub rejected: u64,
    /// Times the breaker opened, since creation.
    pub opened: u64,
}

#[derive(Clone, Copy)]
struct Outcome {
    failed: bool,
    slow: bool,
}

struct Inner {
    state: BreakerState,
    /// Bumped on every transition; outcomes of calls admitted under an
    /// earlier state are not counted in the new one.
    generation: u64,
    since: Instant,
    ring: VecDeque<Outcome>,
    failures: usize,
    slow: usize,
    probes_admitted: usize,
    probes_done: usize,
    probe_failures: usize,
    probe_slow: usize,
    rejected: u64,
    opened: u64,
}

type Listener = Box<dyn Fn(&str, BreakerState, BreakerState) + Send + Sync>;

/// A circuit breaker, one per primary (shared by every plan that uses it).
///
/// Count-based sliding window, as in resilience4j: once `minimum_calls` are
/// in the window, a failure rate or slow-call rate at or above its threshold
/// opens the breaker. Open, it refuses calls at once with
/// [`Error::Unavailable`] and does not touch the store. After `open_wait` it
/// becomes half-open and admits `half_open_calls` probes (others are
/// refused); when they have all finished, their failure and slow rates close
/// it or open it again. If the probes do not finish within
/// `half_open_max_wait`, it opens again: it is never stuck half-open.
///
/// Only [`Error::Unavailable`] outcomes are failures; any answer from the
/// store (a row, a duplicate key, a rejected value) is a success, so bad
/// input never trips the breaker. A call that takes at least
/// `slow_call_duration` is slow, whatever its outcome.
///
/// Every state change is logged (`tracing`, target `octopus::breaker`) and
/// given to listeners added with [`CircuitBreaker::on_state_change`]. Time is
/// tokio's clock, so tests can drive it with `tokio::time::pause`.
pub struct CircuitBreaker {
    name: String,
    config: BreakerOptions,
    inner: Mutex<Inner>,
    listeners: Mutex<Vec<Listener>>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish()
    }
}

/// Permission for one call; records its outcome, or gives the probe slot
/// back if the call is dropped before it finishes.
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    generation: u64,
    started: Instant,
    done: bool,
}

impl Permit {
    /// Records the call's outcome.
    pub fn record<T>(mut self, outcome: &Result<T>) {
        self.done = true;
        let failed = matches!(outcome, Err(e) if e.is_unavailable());
        let slow = self.started.elapsed() >= self.breaker.config.slow_call_duration;
        self.breaker
            .record(self.generation, Outcome { failed, slow });
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.release(self.generation);
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker for the store called `name`.
    pub fn new(name: impl Into<String>, config: BreakerOptions) -> Result<Arc<Self>> {
        config.validate()?;
        Ok(Arc::new(CircuitBreaker {
            name: name.into(),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                generation: 0,
                since: Instant::now(),
                ring: VecDeque::with_capacity(config.window),
                failures: 0,
                slow: 0,
                probes_admitted: 0,
                probes_done: 0,
                probe_failures: 0,
                probe_slow: 0,
                rejected: 0,
                opened: 0,
            }),
            config,
            listeners: Mutex::new(Vec::new()),
        }))
    }

    /// The store this breaker protects.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings.
    pub fn config(&self) -> &BreakerOptions {
        &self.config
    }

    /// Calls `f(store_name, from, to)` on every state change.
    pub fn on_state_change(
        &self, f: impl Fn(&str, BreakerState, BreakerState) + Send + Sync + 'static,
    ) {
        self.lock_listeners().push(Box::new(f));
    }

    /// The current state (an open breaker whose wait has passed reports
    /// `Open` until a call arrives and makes it half-open).
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Counters and state.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let g = self.lock();
        BreakerSnapshot {
            state: g.state,
            window_calls: g.ring.len(),
            window_failures: g.failures,
            window_slow: g.slow,
            rejected: g.rejected,
            opened: g.opened,
        }
    }

    /// Asks to make a call: a [`Permit`] to record its outcome with, or
    /// [`Error::Unavailable`] if the breaker refuses it.
    pub fn acquire(self: &Arc<Self>) -> Result<Permit> {
        let mut changes = Vec::new();
        let admitted = {
            let mut g = self.lock();
            let now = Instant::now();
            if g.state == BreakerState::Open && now.duration_since(g.since) >= self.config.open_wait
            {
                changes.push(self.transition(&mut g, BreakerState::HalfOpen, now));
            }
            if g.state == BreakerState::HalfOpen
                && now.duration_since(g.since) >= self.config.half_open_max_wait
            {
                changes.push(self.transition(&mut g, BreakerState::Open, now));
            }
            match g.state {
                BreakerState::Closed => Some(g.generation),
                BreakerState::HalfOpen if g.probes_admitted < self.config.half_open_calls => {
                    g.probes_admitted += 1;
                    Some(g.generation)
                }
                _ => {
                    g.rejected += 1;
                    None
                }
            }
        };
        self.notify(changes);
        match admitted {
            Some(generation) => Ok(Permit {
                breaker: self.clone(),
                generation,
                started: Instant::now(),
                done: false,
            }),
            None => Err(Error::unavailable(&self.name, "circuit breaker is open")),
        }
    }

    /// Runs `call` under the breaker: refused at once when open, counted
    /// otherwise.
    pub async fn call<T>(self: &Arc<Self>, call: impl Future<Output = Result<T>>) -> Result<T> {
        let permit = self.acquire()?;
        let out = call.await;
        permit.record(&out);
        out
    }

    /// Closes an open or half-open breaker because the store was seen to
    /// answer outside it (journal replay probes the primary on a short
    /// backoff of its own, and a replayed batch proves the store is back):
    /// reads need not wait out the rest of `open_wait`.
    pub fn store_answered(&self) {
        let change = {
            let mut g = self.lock();
            if g.state == BreakerState::Closed {
                return;
            }
            self.transition(&mut g, BreakerState::Closed, Instant::now())
        };
        self.notify(vec![change]);
    }

    fn record(&self, generation: u64, outcome: Outcome) {
        let mut changes = Vec::new();
        {
            let mut g = self.lock();
            if g.generation != generation {
                return;
            }
            let now = Instant::now();
            match g.state {
                BreakerState::Closed => {
                    g.ring.push_back(outcome);
                    g.failures += usize::from(outcome.failed);
                    g.slow += usize::from(outcome.slow);
                    if g.ring.len() > self.config.window
                        && let Some(old) = g.ring.pop_front()
                    {
                        g.failures -= usize::from(old.failed);
                        g.slow -= usize::from(old.slow);
                    }
                    let n = g.ring.len();
                    if n >= self.config.minimum_calls.min(self.config.window)
                        && self.over_threshold(g.failures, g.slow, n)
                    {
                        changes.push(self.transition(&mut g, BreakerState::Open, now));
                    }
                }
                BreakerState::HalfOpen => {
                    g.probes_done += 1;
                    g.probe_failures += usize::from(outcome.failed);
                    g.probe_slow += usize::from(outcome.slow);
                    if g.probes_done >= self.config.half_open_calls {
                        let next =
                            if self.over_threshold(g.probe_failures, g.probe_slow, g.probes_done) {
                                BreakerState::Open
                            } else {
                                BreakerState::Closed
                            };
                        changes.push(self.transition(&mut g, next, now));
                    }
                }
                BreakerState::Open => {}
            }
        }
        self.notify(changes);
    }

    fn release(&self, generation: u64) {
        let mut g = self.lock();
        if g.generation == generation && g.state == BreakerState::HalfOpen {
            g.probes_admitted = g.probes_admitted.saturating_sub(1);
        }
    }

    fn over_threshold(&self, failures: usize, slow: usize, n: usize) -> bool {
        let n = n as f64;
        failures as f64 / n >= self.config.failure_rate
            || slow as f64 / n >= self.config.slow_call_rate
    }

    fn transition(
        &self, g: &mut Inner, to: BreakerState, now: Instant,
    ) -> (BreakerState, BreakerState) {
        let from = g.state;
        g.state = to;
        g.generation += 1;
        g.since = now;
        g.ring.clear();
        g.failures = 0;
        g.slow = 0;
        g.probes_admitted = 0;
        g.probes_done = 0;
        g.probe_failures = 0;
        g.probe_slow = 0;
        if to == BreakerState::Open {
            g.opened += 1;
        }
        (from, to)
    }

    fn notify(&self, changes: Vec<(BreakerState, BreakerState)>) {
        for (from, to) in changes {
            match to {
                BreakerState::Open => {
                    tracing::warn!(target: "octopus::breaker", store = %self.name, ?from, "circuit opened: calls fail fast")
                }
                BreakerState::HalfOpen => {
                    tracing::info!(target: "octopus::breaker", store = %self.name, ?from, "circuit half-open: probing")
                }
                BreakerState::Closed => {
                    tracing::info!(target: "octopus::breaker", store = %self.name, ?from, "circuit closed: store healthy")
                }
            }
            for listener in self.lock_listeners().iter() {
                listener(&self.name, from, to);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the state consistent, so a panic in
        // another thread does not make it unusable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, Vec<Listener>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }
}
