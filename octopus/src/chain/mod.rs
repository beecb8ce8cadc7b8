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
//!   that holds entries but does not answer fails the read with
//!   [`Error::Unavailable`]: it may hold a newer write of the key than the
//!   caches and the primary do.
//!
//! In a fleet, a local journal is one server's alone: with
//! [`FallbackChain::claims`], a server claims a key in a store every
//! server reaches before its local journal takes the key, and no other
//! server writes the key while the claim stands (see [`KeyClaims`]). Without
//! claims a chain cannot order a key that one server journals locally
//! while another writes it to the stream or the primary: the local entry
//! drains after the other's, whichever was acknowledged first.

mod behind;
pub(crate) mod claims;

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use self::behind::Behind;
use self::claims::{CLAIM_POLL, Claim, Claims, KeyClaims};
use crate::breaker::CircuitBreaker;
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
    claims: Option<Arc<Claims>>,
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
            claims: None,
        };
        chain.mode.send_replace(chain.mode());
        Ok(chain)
    }

    /// Keys are claimed in `store` before a link after the first (a
    /// server's own journal) takes them, and other servers' claims are
    /// honoured (see [`KeyClaims`]): for fleets whose first link is shared.
    pub fn claims(mut self, store: Arc<dyn KeyClaims>) -> Self {
        self.claims = Some(Arc::new(Claims::new(store)));
        self
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
        if let Some(claims) = &self.claims {
            watchers.push(runtime.spawn(tick_claims(claims.clone(), self.links.clone())));
        }
    }

    /// Whether any link has anything pending.
    fn links_pending(&self) -> bool {
        self.links.iter().any(|l| l.has_pending())
    }

    /// Whether claims may exist, so a key must be looked up in them.
    fn looking(&self) -> Option<&Claims> {
        self.claims.as_deref().filter(|c| c.looking())
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

/// The claims' background work, every [`CLAIM_POLL`]: a held key is
/// released once no link after the first holds an entry of it (or cannot
/// say).
async fn tick_claims(claims: Arc<Claims>, links: Vec<Arc<dyn Fallback>>) {
    let mut every = tokio::time::interval(CLAIM_POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let pending = |schema: &'static Schema, key: Key| -> BoxFuture<'static, bool> {
            let links = links.clone();
            Box::pin(async move {
                for link in &links[1..] {
                    if link.has_pending() && !matches!(link.pending(schema, &key).await, Ok(None)) {
                        return true;
                    }
                }
                false
            })
        };
        let quiet = combined(&links) == Mode::Healthy && !links.iter().any(|l| l.has_pending());
        claims.tick(pending, quiet).await;
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
            if let Some(claims) = self.looking() {
                match claims.others(schema, &key).await {
                    Ok(None) => {}
                    Ok(Some(claim)) => return Err(Claims::held_by(schema, &key, &claim)),
                    Err(e) => {
                        return Err(Error::unavailable(
                            "fallback chain",
                            format!(
                                "table `{}`, key {key}: another server may hold it in its local \
                                 journal, and the claim store did not answer ({e})",
                                schema.table()
                            ),
                        )
                        .before_sending());
                    }
                }
            }
            let mut from = self.holder(schema, &key).await.unwrap_or(0);
            // A key this server claimed stays in its own journal until the
            // claim is released: the claim's row is what other servers
            // read, so no write of the key may pass it.
            if self.claims.as_ref().is_some_and(|c| c.holds(schema, &key)) {
                from = from.max(1);
            }
            let mut error = error;
            for (i, link) in self.links.iter().enumerate().skip(from) {
                let out = match (&self.claims, i) {
                    (Some(claims), 1..) => {
                        let _key = claims.keys.lock(schema, &key).await;
                        match claims.take(schema, &key).await {
                            Ok(()) => match link.write(schema, write, cached, error).await {
                                // Journaled: a failure from here on must
                                // not send the write to another link.
                                Ok(outcome) => {
                                    return claims
                                        .record(schema, &key, write.record())
                                        .await
                                        .map(|()| outcome);
                                }
                                failed => failed,
                            },
                            Err(refused) => Err(refused),
                        }
                    }
                    _ => link.write(schema, write, cached, error).await,
                };
                match out {
                    Err(e) if e.is_unavailable() && i + 1 < self.links.len() => {
                        tracing::warn!(target: "octopus::fallback", table = schema.table(), %key, error = %e, "fallback link unavailable: trying the next");
                        if let Some(claims) = &self.claims {
                            claims.link_failed();
                        }
                        error = e;
                    }
                    out => return out,
                }
            }
            Err(error)
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
        self.links_pending() || self.looking().is_some()
    }

    fn must_queue<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            for link in &self.links {
                if link.has_pending() && link.must_queue(schema, key).await {
                    return true;
                }
            }
            // This server's claim sends the write to its journal; another
            // server's (or no answer) to `write`, which refuses it.
            match self.looking() {
                Some(claims) if claims.holds(schema, key) => true,
                Some(claims) => !matches!(claims.others(schema, key).await, Ok(None)),
                None => false,
            }
        })
    }

    fn pending<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Option<Record>>>> {
        Box::pin(async move {
            // Another server's claim holds the newest write of the key.
            if let Some(claims) = self.looking() {
                match claims.others(schema, key).await {
                    Ok(Some(Claim {
                        write: Some(newest),
                        ..
                    })) => return Ok(Some(newest)),
                    Ok(_) => {}
                    // Another server may hold a newer write of the key.
                    Err(e) => return Err(e),
                }
            }
            for link in self.links.iter().rev() {
                if !link.has_pending() {
                    continue;
                }
                // A link that holds entries but cannot say whether one is of
                // this key fails the read: the primary may be older.
                if let Some(found) = link.pending(schema, key).await? {
                    return Ok(Some(found));
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
            while self.links_pending() {
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
