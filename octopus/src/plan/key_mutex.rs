//! One async mutex per key, held by journaled writes from their append to
//! their cache puts, so the puts of one key land in journal order. Entries
//! exist only while a write holds or waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::schema::Schema;
use crate::value::Key;

type Id = (&'static str, Key);

/// A key's mutex, and how many guards hold or wait for it.
type Slot = (Arc<tokio::sync::Mutex<()>>, usize);

#[derive(Default)]
pub(crate) struct KeyMutexes {
    held: Mutex<HashMap<Id, Slot>>,
}

/// A key's mutex, held; dropping it releases the key.
pub(crate) struct KeyGuard<'a> {
    owner: &'a KeyMutexes,
    id: Option<Id>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyMutexes {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Slot>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for `key`'s mutex (of `schema`'s table).
    pub async fn lock(&self, schema: &'static Schema, key: &Key) -> KeyGuard<'_> {
        let id = (schema.table(), key.clone());
        let mutex = {
            let mut map = self.map();
            let slot = map.entry(id.clone()).or_default();
            slot.1 += 1;
            slot.0.clone()
        };
        // Counted before waiting, and uncounted by the guard's drop, even
        // if this future is dropped while it waits.
        let mut guard = KeyGuard {
            owner: self,
            id: Some(id),
            guard: None,
        };
        guard.guard = Some(mutex.lock_owned().await);
        guard
    }

    /// Keys with a holder or a waiter (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Some(id) = self.id.take() {
            let mut map = self.owner.map();
            if let Some(slot) = map.get_mut(&id) {
                slot.1 -= 1;
                if slot.1 == 0 {
                    map.remove(&id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Model;
    use crate::TestRow as Row;

    #[tokio::test]
    async fn a_key_is_held_by_one_writer_and_forgotten_when_free() {
        let locks = Arc::new(KeyMutexes::default());
        let key = Key::UInt(1);
        let first = locks.lock(Row::SCHEMA, &key).await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _held = locks.lock(Row::SCHEMA, &Key::UInt(1)).await;
            })
        };
        // Another key is free meanwhile.
        drop(locks.lock(Row::SCHEMA, &Key::UInt(2)).await);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn a_waiter_given_up_leaves_nothing_behind() {
        let locks = Arc::new(KeyMutexes::default());
        let first = locks.lock(Row::SCHEMA, &Key::UInt(1)).await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _held = locks.lock(Row::SCHEMA, &Key::UInt(1)).await;
            })
        };
        tokio::task::yield_now().await;
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        drop(first);
        assert_eq!(locks.len(), 0);
    }
}
