//! A scriptable store for plan, breaker and journal tests: a real
//! `MemoryStore` underneath, with scripted failures, delays and pauses on the
//! way in. It stands in for a backend's *behaviour under faults*, at the
//! trait boundary, where the fault-free stores are real.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use octopus::{BoxFuture, Error, Key, MemoryStore, Record, Result, Schema, Store};
use tokio::sync::Notify;

/// What the next call does.
#[derive(Debug)]
pub enum Step {
    /// Goes through to the memory store.
    Pass,
    /// Fails with `Unavailable`, before anything was sent (not in doubt).
    Down,
    /// Fails with `Rejected` (bad input: the server answered).
    Reject,
    /// Waits (on tokio's clock), then goes through.
    Slow(Duration),
    /// Goes through, then waits for the gate before answering (a read that
    /// loaded its row and is slow to return it). [`Scripted::held`] is
    /// notified once the call has gone through.
    Gate(Arc<Notify>),
    /// Goes through, then fails with `Unavailable`: a write committed
    /// whose answer a crash or a timeout took (in doubt for the caller).
    Lost,
    /// As `Lost`, but the answer is lost only once the gate opens
    /// ([`Scripted::held`] is notified once the call has gone through).
    LostAfter(Arc<Notify>),
}

/// A store (named "scripted") that runs each call as the next [`Step`] of
/// its script says, [`Step::Pass`] once the script is used up; the rows live
/// in [`Scripted::inner`]. `ensure_schema` and `scan` are not scripted.
#[derive(Default)]
pub struct Scripted {
    /// Where the rows are: read or write them here to bypass the script.
    pub inner: MemoryStore,
    script: Mutex<VecDeque<Step>>,
    /// Calls of `get` and `get_many` that reached the store.
    pub gets: AtomicUsize,
    /// Calls of `insert`, `upsert`, `update` and `delete` that reached the
    /// store.
    pub writes: AtomicUsize,
    /// While set, every call fails with `Unavailable` (an outage).
    down: AtomicBool,
    /// Calls of `ensure_schema` still to refuse with `Rejected` (a table
    /// that does not fit its model), counted down by each refusal.
    pub ensure_failures: AtomicUsize,
    /// Notified (one permit) each time a [`Step::Gate`] call has gone
    /// through to the rows and starts waiting for its gate.
    pub held: Notify,
}

impl Scripted {
    /// An empty store with an empty script.
    pub fn new() -> Arc<Self> {
        Arc::new(Scripted::default())
    }

    /// Appends `step` to the script.
    pub fn then(&self, step: Step) -> &Self {
        self.script.lock().unwrap().push_back(step);
        self
    }

    /// Appends `n` steps, each made by `step`.
    pub fn then_n(&self, n: usize, step: impl Fn() -> Step) -> &Self {
        for _ in 0..n {
            self.then(step());
        }
        self
    }

    /// Scripted calls that reached the store: [`gets`](Self::gets) plus
    /// [`writes`](Self::writes).
    pub fn calls(&self) -> usize {
        self.gets.load(Ordering::SeqCst) + self.writes.load(Ordering::SeqCst)
    }

    /// Makes the next `n` calls of `ensure_schema` fail with `Rejected`.
    pub fn refuse_ensure_schema(&self, n: usize) {
        self.ensure_failures.store(n, Ordering::SeqCst);
    }

    /// Starts or ends an outage.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn next(&self) -> Step {
        if self.down.load(Ordering::SeqCst) {
            return Step::Down;
        }
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Pass)
    }

    async fn run<T>(&self, inner: impl Future<Output = Result<T>>) -> Result<T> {
        match self.next() {
            Step::Pass => inner.await,
            // Refused before anything was sent (a connection refused).
            Step::Down => Err(Error::unavailable("scripted", "scripted outage").before_sending()),
            Step::Reject => Err(Error::Rejected {
                store: "scripted".into(),
                message: "scripted bad input".into(),
            }),
            Step::Slow(d) => {
                tokio::time::sleep(d).await;
                inner.await
            }
            Step::Lost => {
                let _ = inner.await;
                Err(Error::unavailable("scripted", "the answer was lost"))
            }
            Step::LostAfter(gate) => {
                let _ = inner.await;
                self.held.notify_one();
                gate.notified().await;
                Err(Error::unavailable("scripted", "the answer was lost"))
            }
            Step::Gate(gate) => {
                let out = inner.await;
                self.held.notify_one();
                gate.notified().await;
                out
            }
        }
    }
}

impl Store for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn ensure_schema<'a>(&'a self, schema: &'static Schema) -> BoxFuture<'a, Result<()>> {
        let refuse = self
            .ensure_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Box::pin(async move {
                Err(Error::Rejected {
                    store: "scripted".into(),
                    message: format!("table `{}` does not fit its model", schema.table()),
                })
            });
        }
        self.inner.ensure_schema(schema)
    }

    fn get<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async move {
            // Counted when the call runs, not when its future is made.
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.run(self.inner.get(schema, key)).await
        })
    }

    fn get_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        Box::pin(async move {
            // Counted when the call runs, not when its future is made.
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.run(self.inner.get_many(schema, keys)).await
        })
    }

    fn insert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Counted when the call runs, not when its future is made.
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.run(self.inner.insert(schema, record)).await
        })
    }

    fn upsert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Counted when the call runs, not when its future is made.
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.run(self.inner.upsert(schema, record)).await
        })
    }

    fn update<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Counted when the call runs, not when its future is made.
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.run(self.inner.update(schema, record, expected_version))
                .await
        })
    }

    fn delete<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            // Counted when the call runs, not when its future is made.
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.run(self.inner.delete(schema, key)).await
        })
    }

    fn scan<'a>(
        &'a self, schema: &'static Schema, after: Option<&'a Key>, limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        self.inner.scan(schema, after, limit)
    }
}
