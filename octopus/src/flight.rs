//! Single flight: under a thundering herd on one missing key, one loader
//! goes to the primary and the others wait (bounded) for its result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use crate::schema::Schema;
use crate::value::{Key, Record};

type FlightKey = (&'static str, u64, Key);

/// What a leader publishes: the row it loaded, or `Err(())` if its load
/// failed (followers then load for themselves).
pub(crate) type Landing = Result<Option<Record>, ()>;

/// A flight: when its leader joined, and where it lands.
type Flight = (Instant, Arc<watch::Sender<Option<Landing>>>);

#[derive(Default)]
pub(crate) struct Flights {
    inflight: Mutex<HashMap<FlightKey, Flight>>,
}

pub(crate) enum Role<'a> {
    Leader(Leader<'a>),
    /// The flight to wait for, and when its leader joined (its load was
    /// sent after that).
    Follower(watch::Receiver<Option<Landing>>, Instant),
}

/// The loader of a key; removes its flight when done or dropped.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: FlightKey,
    tx: Arc<watch::Sender<Option<Landing>>>,
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FlightKey, Flight>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn join(&self, schema: &'static Schema, key: &Key) -> Role<'_> {
        let fk = (schema.table(), schema.fingerprint(), key.clone());
        let mut map = self.lock();
        if let Some((joined, tx)) = map.get(&fk) {
            return Role::Follower(tx.subscribe(), *joined);
        }
        let tx = Arc::new(watch::channel(None).0);
        map.insert(fk.clone(), (Instant::now(), tx.clone()));
        Role::Leader(Leader {
            flights: self,
            key: fk,
            tx,
        })
    }

    /// A new flight of `key` led by the caller, in place of any in the air
    /// (whose leader still lands it for its own followers).
    pub(crate) fn lead(&self, schema: &'static Schema, key: &Key) -> Leader<'_> {
        let fk = (schema.table(), schema.fingerprint(), key.clone());
        let tx = Arc::new(watch::channel(None).0);
        self.lock().insert(fk.clone(), (Instant::now(), tx.clone()));
        Leader {
            flights: self,
            key: fk,
            tx,
        }
    }

    /// Detaches the flight of `key`, if any: readers arriving after a write
    /// must not be handed a row loaded before it.
    pub(crate) fn forget(&self, schema: &'static Schema, key: &Key) {
        let fk = (schema.table(), schema.fingerprint(), key.clone());
        self.lock().remove(&fk);
    }
}

impl Leader<'_> {
    pub(crate) fn land(self, landing: Landing) {
        self.tx.send_replace(Some(landing));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.lock();
        if map
            .get(&self.key)
            .is_some_and(|(_, tx)| Arc::ptr_eq(tx, &self.tx))
        {
            map.remove(&self.key);
        }
    }
}

/// Waits for the leader's landing; `None` if it failed or went away.
pub(crate) async fn wait(mut rx: watch::Receiver<Option<Landing>>) -> Option<Option<Record>> {
    loop {
        if let Some(landing) = rx.borrow_and_update().clone() {
            return landing.ok();
        }
        if rx.changed().await.is_err() {
            return rx.borrow().clone().and_then(Result::ok);
        }
    }
}
