//! Fallbacks composed: [`FallbackChain`] hands a write to the first link
//! that takes it (a shared stream, say, then a local journal when the
//! stream is unreachable too).
//!
//! The rules that keep one key's writes in order across the links:
//!
//! - **A key sticks to the deepest link holding it.** A write of a key
//!   that has a pending entry in a later link goes to that link, behind
//!   it; otherwise it goes to the first link that takes it, and on to the
//!   next only when a link answers [`Error::Unavailable`]. So of one key's
//!   pending entries, those in later links are the newer ones.
//! - **A later link drains behind the earlier ones.** Each link after the
//!   first replays into the primary through a guard: a change of a key
//!   that an earlier link still holds (or may hold: a link that does not
//!   answer says so, [`Fallback::must_queue`]) is not applied yet, and
//!   replay retries it later. The earlier link's older entries of the key
//!   reach the primary first.
//! - **Reads see the newest pending write**: the deepest link's. A link
//!   that does not answer is skipped (its acknowledged writes were put in
//!   the caches when they were acknowledged).
//!
//! What it cannot order: a server that writes a key to its local journal
//! while the stream is unreachable *to it alone*, and another server that
//! meanwhile writes the same key to the stream. The local entry drains
//! after the stream's, whichever was acknowledged first (versioned rows
//! turn the loser into a dead letter; unversioned rows keep the local
//! one).

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::breaker::CircuitBreaker;
use crate::change::Change;
use crate::fallback::{CacheInvalidation, Fallback, FallbackStats, Mode, Write, WriteOutcome};
use crate::schema::Schema;
use crate::store::{BoxFuture, Store};
use crate::value::{Key, Record};
use crate::{Error, Result};

/// Fallbacks tried in order (see the module docs).
pub struct FallbackChain {
    links: Vec<Arc<dyn Fallback>>,
    mode: watch::Sender<Mode>,
    watchers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl FallbackChain {
    /// A chain of `links`, tried in order; at least two.
    pub fn new(links: Vec<Arc<dyn Fallback>>) -> Result<Self> {
        if links.len() < 2 {
            return Err(Error::invalid(format!(
                "a fallback chain needs at least two links, not {}",
                links.len()
            )));
        }
        let chain = FallbackChain {
            links,
            mode: watch::channel(Mode::Healthy).0,
            watchers: Mutex::new(Vec::new()),
        };
        chain.mode.send_replace(chain.mode());
        Ok(chain)
    }

    /// The links, in order.
    pub fn links(&self) -> &[Arc<dyn Fallback>] {
        &self.links
    }

    /// The deepest link after the first with a pending entry of `key`, if
    /// any answers so (the first link is where a write goes anyway: asking
    /// it would cost a shared log a round trip on every write).
    async fn holder(&self, schema: &'static Schema, key: &Key) -> Option<usize> {
        for (i, link) in self.links.iter().enumerate().skip(1).rev() {
            if link.has_pending() && matches!(link.pending(schema, key).await, Ok(Some(_))) {
                return Some(i);
            }
        }
        None
    }

    /// Keeps the chain's mode current: a task per link forwards its
    /// changes.
    fn watch_links(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let tasks = self.links.iter().map(|link| {
            let mut changes = link.watch_mode();
            let (links, sender) = (self.links.clone(), self.mode.clone());
            runtime.spawn(async move {
                loop {
                    sender.send_if_modified(|m| {
                        let now = combined(&links);
                        let changed = *m != now;
                        *m = now;
                        changed
                    });
                    if changes.changed().await.is_err() {
                        return;
                    }
                }
            })
        });
        let mut watchers = lock(&self.watchers);
        for old in watchers.drain(..) {
            old.abort();
        }
        watchers.extend(tasks);
    }

    fn stop_watching(&self) {
        for task in lock(&self.watchers).drain(..) {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The key `write` is of.
fn key_of_write(schema: &'static Schema, write: &Write) -> Result<Key> {
    match write {
        Write::Delete { key, .. } => Ok(key.clone()),
        Write::Insert(record) | Write::Update { record, .. } => {
            crate::store::key_of(schema, record)
        }
    }
}

/// The mode of a chain whose links stand as they do: journaling if any
/// link journals, else draining if any drains.
fn combined(links: &[Arc<dyn Fallback>]) -> Mode {
    let modes: Vec<Mode> = links.iter().map(|l| l.mode()).collect();
    if modes.contains(&Mode::Journaling) {
        Mode::Journaling
    } else if modes.contains(&Mode::Draining) {
        Mode::Draining
    } else {
        Mode::Healthy
    }
}

impl Fallback for FallbackChain {
    fn write<'a>(
        &'a self, schema: &'static Schema, write: &'a Write, cached: Option<&'a Record>,
        error: Error,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        Box::pin(async move {
            let key = key_of_write(schema, write)?;
            let from = self.holder(schema, &key).await.unwrap_or(0);
            let Some((last, before)) = self.links[from..].split_last() else {
                return Err(error);
            };
            let mut error = error;
            for link in before {
                match link.write(schema, write, cached, error).await {
                    Err(e) if e.is_unavailable() => {
                        tracing::warn!(target: "octopus::fallback", table = schema.table(), %key, error = %e, "fallback link unavailable: trying the next");
                        error = e;
                    }
                    out => return out,
                }
            }
            last.write(schema, write, cached, error).await
        })
    }

    fn attach(&self, primary: Arc<dyn Store>, breaker: Arc<CircuitBreaker>) -> Result<()> {
        for (i, link) in self.links.iter().enumerate() {
            let target: Arc<dyn Store> = if i == 0 {
                primary.clone()
            } else {
                Arc::new(Behind {
                    primary: primary.clone(),
                    earlier: self.links[..i].to_vec(),
                })
            };
            link.attach(target, breaker.clone())?;
        }
        self.watch_links();
        Ok(())
    }

    fn attach_caches(&self, caches: Arc<dyn CacheInvalidation>) {
        for link in &self.links {
            link.attach_caches(caches.clone());
        }
    }

    fn register(&self, schema: &'static Schema) {
        for link in &self.links {
            link.register(schema);
        }
    }

    fn has_pending(&self) -> bool {
        self.links.iter().any(|l| l.has_pending())
    }

    fn must_queue<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            for link in &self.links {
                if link.has_pending() && link.must_queue(schema, key).await {
                    return true;
                }
            }
            false
        })
    }

    fn pending<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Option<Record>>>> {
        Box::pin(async move {
            for link in self.links.iter().rev() {
                if !link.has_pending() {
                    continue;
                }
                match link.pending(schema, key).await {
                    Ok(Some(found)) => return Ok(Some(found)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(target: "octopus::fallback", table = schema.table(), %key, error = %e, "a fallback link's pending writes unreadable: skipped");
                    }
                }
            }
            Ok(None)
        })
    }

    fn mode(&self) -> Mode {
        combined(&self.links)
    }

    fn watch_mode(&self) -> watch::Receiver<Mode> {
        self.mode.subscribe()
    }

    fn drained(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // A later link drains behind the earlier ones: until all are
            // empty at once.
            while self.has_pending() {
                for link in &self.links {
                    link.drained().await;
                }
            }
        })
    }

    fn stats(&self) -> Option<FallbackStats> {
        let all: Vec<FallbackStats> = self.links.iter().filter_map(|l| l.stats()).collect();
        if all.is_empty() {
            return None;
        }
        Some(FallbackStats {
            pending: all.iter().map(|s| s.pending).sum(),
            appended: all.iter().map(|s| s.appended).sum(),
            replayed: all.iter().map(|s| s.replayed).sum(),
            dead_letters: all.iter().map(|s| s.dead_letters).sum(),
            replay_error: all.iter().find_map(|s| s.replay_error.clone()),
            mode: self.mode(),
        })
    }

    fn detach(&self) {
        for link in &self.links {
            link.detach();
        }
        self.stop_watching();
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.stop_watching();
            let mut first_error = None;
            for link in &self.links {
                if let Err(e) = link.close().await {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }
}

/// The primary as a later link replays into it: a change of a key an
/// earlier link still holds waits (see the module docs).
struct Behind {
    primary: Arc<dyn Store>,
    earlier: Vec<Arc<dyn Fallback>>,
}

impl Behind {
    /// The first change of `changes` whose key an earlier link may hold.
    async fn blocked(&self, schema: &'static Schema, changes: &[Change]) -> Option<Key> {
        for change in changes {
            for link in &self.earlier {
                if link.has_pending() && link.must_queue(schema, &change.key).await {
                    return Some(change.key.clone());
                }
            }
        }
        None
    }
}

impl Store for Behind {
    fn name(&self) -> &str {
        self.primary.name()
    }

    fn ensure_schema<'a>(&'a self, schema: &'static Schema) -> BoxFuture<'a, Result<()>> {
        self.primary.ensure_schema(schema)
    }

    fn get<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        self.primary.get(schema, key)
    }

    fn get_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        self.primary.get_many(schema, keys)
    }

    fn insert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        self.primary.insert(schema, record)
    }

    fn upsert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        self.primary.upsert(schema, record)
    }

    fn update<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<()>> {
        self.primary.update(schema, record, expected_version)
    }

    fn delete<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        self.primary.delete(schema, key)
    }

    fn validate(&self, schema: &'static Schema, record: &Record) -> Result<()> {
        self.primary.validate(schema, record)
    }

    fn apply<'a>(
        &'a self, schema: &'static Schema, changes: &'a [Change],
    ) -> BoxFuture<'a, Result<Vec<Result<()>>>> {
        Box::pin(async move {
            if let Some(key) = self.blocked(schema, changes).await {
                return Err(Error::unavailable(
                    self.primary.name(),
                    format!(
                        "table `{}`: key {key} has older entries pending in an earlier fallback (or it cannot say): replayed after them",
                        schema.table()
                    ),
                ));
            }
            self.primary.apply(schema, changes).await
        })
    }

    fn scan<'a>(
        &'a self, schema: &'static Schema, after: Option<&'a Key>, limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        self.primary.scan(schema, after, limit)
    }
}
