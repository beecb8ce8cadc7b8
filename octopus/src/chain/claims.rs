//! Claims: a fleet's order for keys its servers journal locally (see
//! [`KeyClaims`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::plan::key_mutex::KeyMutexes;
use crate::schema::Schema;
use crate::store::BoxFuture;
use crate::value::{Key, Record};
use crate::{Error, Result};

/// How often a server asks the claim store how many claims the fleet
/// holds, and retries releasing its own.
pub const CLAIM_POLL: Duration = Duration::from_millis(100);

/// A key's claim: who holds it, and the newest write of the key pending
/// in the holder's local journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The holder's name ([`KeyClaims::owner`]).
    pub owner: String,
    /// The newest acknowledged write: `Some(Some(row))` for a row,
    /// `Some(None)` for a delete, `None` while the holder's first write
    /// of the key is not journaled yet.
    pub write: Option<Option<Record>>,
}

/// A store of claims every server of a fleet reaches: how servers keep one
/// key's writes in order while some of them journal it locally
/// (`octopus_adapters::memcache::MemcacheClaims` keeps them in memcached).
///
/// A local journal is seen by its own server only. A server that writes a
/// key to its local journal first **claims** the key in a store every
/// server reaches, and once the write is journaled, puts its row in the
/// claim. While the claim stands:
///
/// - no other server writes the key anywhere (not the primary, not the
///   shared stream, not its own journal): such a write is refused with
///   [`Error::Unavailable`], before anything is sent, naming the holder;
/// - other servers' reads of the key return the claim's row (the newest
///   acknowledged write of it; a write not journaled yet is not in it);
/// - the holder's own writes of the key go on into its local journal,
///   each putting its row in the claim once journaled. A write whose row
///   cannot be put there is answered [`Error::Unavailable`] (journaled,
///   so it may yet be applied: its outcome is unknown).
///
/// The holder releases the claim once its journal holds no entry of the key
/// (replayed into the primary, or dead-lettered). A claim that cannot be
/// taken (the claim store does not answer, or another holds the key)
/// refuses the write: a local journal never holds a key another server
/// might be writing.
///
/// Checking costs a round trip to the claim store, so a server looks only
/// while claims may exist: it holds some itself, the fleet's count of
/// claims (polled) is not zero, or one of its own links failed lately
/// (nats-server died for every server at once: a claim may be moments
/// old). See ARCHITECTURE.md, "Claims", for what it does not cover.
pub trait KeyClaims: Send + Sync {
    /// This server's name in claims: stable across its restarts (a
    /// restarted server finds its journal's claims its own).
    fn owner(&self) -> &str;

    /// Claims `key` for this server (a new claim holds no write yet).
    /// `Ok(None)` when the claim is this server's (taken now, or before);
    /// `Ok(Some(claim))` when another server holds it.
    fn claim<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Claim>>>;

    /// Puts the write of `key` just journaled in this server's claim:
    /// `row`, or `None` for a delete. An error when the claim is not this
    /// server's.
    fn record<'a>(
        &'a self, schema: &'static Schema, key: &'a Key, row: Option<&'a Record>,
    ) -> BoxFuture<'a, Result<()>>;

    /// The claim on `key`, if any.
    fn holder<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Claim>>>;

    /// Drops this server's claim on `key` (nothing when another holds it,
    /// or none does).
    fn release<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<()>>;

    /// How many claims the fleet holds (an upper bound: a server that died
    /// holding claims leaves them counted).
    fn outstanding(&self) -> BoxFuture<'_, Result<u64>>;
}

/// A chain's side of the claims: when to look, and what to release.
pub(super) struct Claims {
    pub store: Arc<dyn KeyClaims>,
    /// The fleet's count at the last poll (`u64::MAX`: unknown).
    fleet: AtomicU64,
    /// A link of this server failed since the fleet last held no claim.
    saw_failure: AtomicBool,
    /// Keys this server claimed and has not released yet.
    held: Mutex<HashMap<(&'static str, Key), &'static Schema>>,
    /// Held while a key's claim and its local append (or its release)
    /// happen, so a release never drops a claim a new entry needs.
    pub keys: KeyMutexes,
}

impl Claims {
    pub fn new(store: Arc<dyn KeyClaims>) -> Self {
        Claims {
            store,
            fleet: AtomicU64::new(u64::MAX),
            saw_failure: AtomicBool::new(true),
            held: Mutex::new(HashMap::new()),
            keys: KeyMutexes::default(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, Key), &'static Schema>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether claims may exist, so reads and writes must ask.
    pub fn looking(&self) -> bool {
        self.fleet.load(Ordering::SeqCst) > 0
            || self.saw_failure.load(Ordering::SeqCst)
            || !self.held().is_empty()
    }

    /// Whether this server holds (or is taking, or releasing) the claim
    /// on `key`.
    pub fn holds(&self, schema: &'static Schema, key: &Key) -> bool {
        self.held().contains_key(&(schema.table(), key.clone()))
    }

    /// A link of this server failed: claims may be moments old.
    pub fn link_failed(&self) {
        self.saw_failure.store(true, Ordering::SeqCst);
    }

    /// Another server's claim on `key`: `Err` when the claim store does
    /// not answer.
    pub async fn others(&self, schema: &'static Schema, key: &Key) -> Result<Option<Claim>> {
        Ok(self
            .store
            .holder(schema, key)
            .await?
            .filter(|c| c.owner != self.store.owner()))
    }

    /// The refusal of a write of `key`, which `claim` holds.
    pub fn held_by(schema: &'static Schema, key: &Key, claim: &Claim) -> Error {
        Error::unavailable(
            "fallback chain",
            format!(
                "table `{}`, key {key}: held by server `{}`, whose local journal has a pending \
                 write of it (claimed while the shared log was unreachable); writable again once \
                 that journal has replayed it",
                schema.table(),
                claim.owner
            ),
        )
        .before_sending()
    }

    /// Claims `key` for a local append; `Err` (sent nothing) when another
    /// server holds it or the claim store does not answer.
    pub async fn take(&self, schema: &'static Schema, key: &Key) -> Result<()> {
        // Held before asking: a claim taken by a call that then failed to
        // answer is released like any other once no entry needs it.
        self.held().insert((schema.table(), key.clone()), schema);
        let taken = self.store.claim(schema, key).await.map_err(|e| {
            Error::unavailable(
                "fallback chain",
                format!(
                    "table `{}`, key {key}: a local journal takes a key only once it is claimed \
                     for this server, and the claim store did not answer ({e})",
                    schema.table()
                ),
            )
            .before_sending()
        })?;
        match taken {
            Some(other) => Err(Self::held_by(schema, key, &other)),
            None => Ok(()),
        }
    }

    /// Puts `row`, just journaled, in this server's claim on `key`; `Err`
    /// (the write's outcome unknown) when it cannot.
    pub async fn record(
        &self, schema: &'static Schema, key: &Key, row: Option<&Record>,
    ) -> Result<()> {
        self.store.record(schema, key, row).await.map_err(|e| {
            Error::unavailable(
                "fallback chain",
                format!(
                    "table `{}`, key {key}: journaled locally, but its row could not be put in the \
                     key's claim for other servers to read ({e}): its outcome is unknown",
                    schema.table()
                ),
            )
        })
    }

    /// One round of the background work: the release of every held key
    /// `pending` says no local link holds, then the fleet's count. A link
    /// failure stops counting once the fleet holds no claim and the chain
    /// is `quiet` (nothing journaling or draining).
    pub async fn tick<F>(&self, pending: F, quiet: bool)
    where
        F: Fn(&'static Schema, Key) -> BoxFuture<'static, bool>,
    {
        let held: Vec<(&'static Schema, Key)> = self
            .held()
            .iter()
            .map(|((_, k), s)| (*s, k.clone()))
            .collect();
        for (schema, key) in held {
            let _key = self.keys.lock(schema, &key).await;
            if pending(schema, key.clone()).await {
                continue;
            }
            match self.store.release(schema, &key).await {
                Ok(()) => {
                    self.held().remove(&(schema.table(), key));
                }
                Err(e) => {
                    tracing::debug!(target: "octopus::fallback", table = schema.table(), %key, error = %e, "releasing a claim failed: retried");
                }
            }
        }
        match self.store.outstanding().await {
            Ok(n) => {
                self.fleet.store(n, Ordering::SeqCst);
                if n == 0 && quiet {
                    self.saw_failure.store(false, Ordering::SeqCst);
                }
            }
            Err(_) => self.fleet.store(u64::MAX, Ordering::SeqCst),
        }
    }
}
