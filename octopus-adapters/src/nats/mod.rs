//! A journal shared by a fleet of servers: a [`Fallback`] on a NATS
//! JetStream stream ([`JetStreamJournal`]).
//!
//! Every server of a fleet opens the same stream. A write the primary cannot
//! take is published on its row's subject (`octopus.<stream>.rows.<table>.<key>`)
//! and acknowledged only once JetStream acknowledged it. The publish carries
//! the sequence number of the last message on that subject as the expected
//! one, and the write was checked against that message (or, with none,
//! against the row a cache holds) with the journal's rules
//! ([`octopus::journal::log`]): so the check and the append are one atomic
//! step across servers while the row has pending entries. Of two servers
//! updating one key from one version, one is acknowledged; the other's
//! publish is refused by JetStream, it checks again against the message
//! that won, and gets `Conflict`. Each publish has a random message id; a
//! publish whose answer was lost (a timeout, a broken connection) is sent
//! again with the same id, and JetStream stores it once.
//!
//! Reads during an outage see every server's pending write of a key: the
//! last message on its subject, read from the stream's leader (a replica
//! may not have it yet).
//!
//! **Draining.** Every server runs a drainer; one at a time holds the lease
//! (key `drainer` of the key-value bucket `<stream>_drainer`, whose entries
//! expire after the lease time), so when a server dies another takes over
//! within a lease. The holder renews the lease by revision before each
//! table it applies, reads the stream in order (one order for the fleet),
//! applies entries to the primary with the journal's conditional replay,
//! publishes refused entries as dead letters on
//! `octopus.<stream>.dead.<table>` (a stream of their own), invalidates the
//! keys in its plans' caches and removes what it did (never applying an
//! entry twice while it runs). Entries of a table it has no model of wait
//! while the others drain; a holder that cannot progress (only such tables
//! are left, or the primary fails it five passes in a row) gives the lease
//! up for another server to take.
//!
//! **Durability.** JetStream acknowledges a message once its file store has
//! it, and by default syncs that store every two minutes: with one replica a
//! power cut can lose acknowledged writes. In production run three replicas
//! (`?replicas=3`) and `sync_interval: always` on the servers. Opening warns
//! when the stream has fewer than three replicas, and refuses an existing
//! stream whose limits or retention could drop a message replay has not
//! applied.
//!
//! **Queueing.** While anything is pending in the stream (as this server
//! last polled it, every 100 ms, or while one of its own publishes is newer
//! than the poll), a write of a key asks the stream's leader whether the
//! key's subject holds a message: if it does, the write goes to the stream
//! behind it; every other key's writes go to the primary, so a drain only
//! has to catch up with the keys that have pending entries.
//!
//! A server keeps asking for a while after it last saw the stream hold
//! anything (twice the call deadline plus a second): a write of a key that
//! another server saw an entry of, and queued behind it, may reach the
//! stream after that entry was drained and the stream looked empty.
//!
//! **Limits.** A server whose primary fails *to it alone* journals while
//! another that has not seen the stream hold anything for that long
//! writes to the primary without asking: the one's entry can overtake the
//! other's newer write at replay (a versioned model turns that into a
//! dead letter). A row whose
//! entries were all drained is checked against the cache again, which may be
//! stale: such a write is checked at replay. Cache puts of journaled writes
//! on several servers are not ordered with the drainer's invalidations on
//! other servers, and the drainer drops keys only from its own server's
//! caches. Which entries were refused is remembered by the holder only: a
//! new holder applies an entry written after an entry the old one
//! dead-lettered (a versioned row still refuses it). A holder that stalls
//! past its lease and then applies can overlap the next one.

mod dead;
mod drain;
mod pass;
mod range;
mod setup;
mod subject;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use octopus::{BoxFuture, CircuitBreaker, Error, Fallback, Key, Record, Result, Schema, Store};
use octopus::{CacheInvalidation, FallbackStats, Mode, Write, WriteOutcome};
use tokio::sync::{Notify, watch};

use crate::lock::{MutexExt, RwLockExt};
use crate::url::StoreUrl;
use setup::{Options, open_stream, options};

/// A [`Fallback`] on a JetStream stream that a fleet of servers shares (see
/// the module docs). Cheap to clone.
#[derive(Clone)]
pub struct JetStreamJournal {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL without its password, for errors and logs.
    name: String,
    /// The subject prefix, `octopus.<stream>`.
    prefix: String,
    js: jetstream::Context,
    stream: stream::Stream,
    /// The dead-letter stream.
    dead: stream::Stream,
    lease: kv::Store,
    /// This server's name in the lease.
    owner: String,
    /// The highest sequence number this server published: while the stream
    /// (as last polled) had not reached it, something of ours is pending
    /// whatever the count said.
    own_last: AtomicU64,
    /// When this server last saw the stream hold anything, plus
    /// [`Inner::settle`]: nanoseconds since [`Inner::born`].
    busy_until: AtomicU64,
    born: std::time::Instant,
    /// How long writes keep asking after the stream held anything.
    settle: Duration,
    schemas: RwLock<HashMap<String, &'static Schema>>,
    caches: RwLock<Vec<Arc<dyn CacheInvalidation>>>,
    /// Messages in the stream when this server last looked (its own
    /// publishes count at once).
    pending: watch::Sender<u64>,
    mode: watch::Sender<Mode>,
    appended: AtomicU64,
    replayed: AtomicU64,
    dead_letters: AtomicU64,
    replay_error: Mutex<Option<String>>,
    wake: Notify,
    closed: AtomicBool,
    drainer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for JetStreamJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamJournal")
            .field("url", &self.inner.name)
            .field("pending", &*self.inner.pending.borrow())
            .finish_non_exhaustive()
    }
}

/// A client of the NATS server `url` names (with its login, if any), its
/// options, and its name for errors (no password).
async fn client(url: &str) -> Result<(async_nats::Client, Options, String)> {
    let parsed = StoreUrl::parse(url)?;
    let options = options(&parsed)?;
    let name = crate::url::redact(url);
    let mut connect = async_nats::ConnectOptions::new()
        .connection_timeout(options.timeout)
        .request_timeout(Some(options.timeout));
    if let (Some(user), Some(password)) = (parsed.user(), parsed.password()) {
        connect = connect.user_and_password(user.to_owned(), password.to_owned());
    }
    let client = connect
        .connect(parsed.location())
        .await
        .map_err(|e| Error::unavailable(&name, e.to_string()))?;
    Ok((client, options, name))
}

impl JetStreamJournal {
    /// The version of the NATS server at `url` (same URL as
    /// [`connect`](Self::connect)), and whether it has JetStream, within
    /// the URL's `timeout`; opens no stream.
    pub async fn server_version(url: &str) -> Result<String> {
        let (client, _, name) = client(url).await?;
        let version = client.server_info().version;
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (2, 10) {
            return Err(Error::unavailable(
                &name,
                format!("nats-server {version} is too old: Octopus needs 2.10 or later"),
            ));
        }
        jetstream::new(client)
            .query_account()
            .await
            .map_err(|e| Error::unavailable(&name, format!("JetStream does not answer: {e}")))?;
        Ok(format!("NATS {version} with JetStream"))
    }

    /// Connects to `url`
    /// (`nats://[user:password@]host:port?stream=octopus&replicas=1&lease=10s&timeout=2s`),
    /// creating the stream, its dead-letter stream and the lease bucket if
    /// they do not exist, and checking their settings if they do. The
    /// server must answer now.
    pub async fn connect(url: &str) -> Result<Self> {
        let (client, options, name) = client(url).await?;
        let unavailable = |e: &dyn std::fmt::Display| Error::unavailable(&name, e.to_string());
        let js = jetstream::new(client);
        let prefix = format!("octopus.{}", options.stream);
        let stream = open_stream(
            &js,
            &options,
            &options.stream,
            subject::rows(&prefix),
            &name,
        )
        .await?;
        let dead = open_stream(
            &js,
            &options,
            &format!("{}_dead", options.stream),
            format!("{prefix}.dead.>"),
            &name,
        )
        .await?;
        let lease = js
            .create_or_update_key_value(kv::Config {
                bucket: format!("{}_drainer", options.stream),
                history: 1,
                max_age: options.lease,
                num_replicas: options.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        // Random: two servers (or two journals of one process) never share
        // a name, nor the message ids derived from it.
        let owner = uuid::Uuid::now_v7().to_string();
        let inner = Inner {
            name,
            prefix,
            js,
            stream,
            dead,
            lease,
            owner,
            own_last: AtomicU64::new(0),
            busy_until: AtomicU64::new(0),
            born: std::time::Instant::now(),
            settle: options.timeout * 2 + Duration::from_secs(1),
            schemas: RwLock::default(),
            caches: RwLock::default(),
            pending: watch::channel(0).0,
            mode: watch::channel(Mode::Healthy).0,
            appended: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            replay_error: Mutex::new(None),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            drainer: Mutex::new(None),
        };
        let journal = JetStreamJournal {
            inner: Arc::new(inner),
        };
        journal.pending_now().await?;
        Ok(journal)
    }

    /// This server's name in the drainer's lease (a UUID, new with every
    /// connection): while it drains, the lease key holds it.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Messages pending in the stream, as this server last saw them.
    pub fn pending(&self) -> u64 {
        *self.inner.pending.borrow()
    }

    /// Messages pending in the stream now, read from the server (and
    /// remembered as [`JetStreamJournal::pending`]).
    pub async fn pending_now(&self) -> Result<u64> {
        let mut stream = self.inner.stream.clone();
        let info = stream
            .info()
            .await
            .map_err(|e| Error::unavailable(&self.inner.name, e.to_string()))?;
        let (n, last) = (info.state.messages, info.state.last_sequence);
        // A publish of ours the poll may not have seen keeps it pending.
        let n = if self.inner.own_last.load(Ordering::SeqCst) > last {
            n.max(1)
        } else {
            n
        };
        self.inner.pending.send_replace(n);
        if n > 0 {
            self.saw_busy();
        }
        Ok(n)
    }

    /// The stream holds something now: writes ask for a while.
    fn saw_busy(&self) {
        let until = self.inner.born.elapsed() + self.inner.settle;
        let until = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        self.inner.busy_until.fetch_max(until, Ordering::SeqCst);
    }

    /// Whether the stream held anything lately (see "Queueing" in the
    /// module docs).
    fn busy(&self) -> bool {
        let now = u64::try_from(self.inner.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        now < self.inner.busy_until.load(Ordering::SeqCst)
    }

    /// Where the plans this journal serves stand.
    pub fn mode(&self) -> Mode {
        *self.inner.mode.borrow()
    }

    fn set_mode(&self, mode: Mode) {
        self.inner.mode.send_if_modified(|m| {
            let changed = *m != mode;
            *m = mode;
            changed
        });
    }
}

impl Fallback for JetStreamJournal {
    fn write<'a>(
        &'a self, schema: &'static Schema, write: &'a Write, cached: Option<&'a Record>,
        _error: Error,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        Box::pin(self.append(schema, write, cached))
    }

    fn attach(&self, primary: Arc<dyn Store>, breaker: Arc<CircuitBreaker>) -> Result<()> {
        let mut slot = self.inner.drainer.locked();
        if slot.is_none() {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                Error::misuse("a JetStream journal must be attached inside a tokio runtime")
            })?;
            *slot = Some(runtime.spawn(self.clone().drain(primary, breaker)));
        }
        Ok(())
    }

    fn attach_caches(&self, caches: Arc<dyn CacheInvalidation>) {
        self.inner.caches.writing().push(caches);
    }

    fn register(&self, schema: &'static Schema) {
        self.inner
            .schemas
            .writing()
            .insert(schema.table().to_owned(), schema);
    }

    fn has_pending(&self) -> bool {
        self.pending() > 0 || self.busy()
    }

    fn must_queue<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, bool> {
        Box::pin(self.row_has_entries(schema, key))
    }

    fn pending<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Option<Record>>>> {
        Box::pin(self.pending_row(schema, key))
    }

    fn mode(&self) -> Mode {
        JetStreamJournal::mode(self)
    }

    fn watch_mode(&self) -> watch::Receiver<Mode> {
        self.inner.mode.subscribe()
    }

    fn drained(&self) -> BoxFuture<'_, ()> {
        let mut rx = self.inner.pending.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|n| *n == 0).await;
        })
    }

    fn stats(&self) -> Option<FallbackStats> {
        let i = &self.inner;
        Some(FallbackStats {
            pending: self.pending(),
            appended: i.appended.load(Ordering::Relaxed),
            replayed: i.replayed.load(Ordering::Relaxed),
            dead_letters: i.dead_letters.load(Ordering::Relaxed),
            replay_error: i.replay_error.locked().clone(),
            mode: self.mode(),
        })
    }

    fn detach(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.detach();
            let task = self.inner.drainer.locked().take();
            if let Some(task) = task {
                let _ = task.await;
            }
            Ok(())
        })
    }
}
