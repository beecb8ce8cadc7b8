//! Poison-tolerant locking, in one place: every critical section in this
//! crate leaves its data consistent, so a thread that panicked while
//! holding a lock never makes the data behind it unusable.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`] that takes over a poisoned lock.
#[cfg_attr(not(any(feature = "sqlite", feature = "nats")), allow(dead_code))]
pub(crate) trait MutexExt<T> {
    /// The guard, whether or not a holder panicked.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`RwLock::read`] and [`RwLock::write`] that take over a poisoned lock.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "mysql", feature = "nats")),
    allow(dead_code)
)]
pub(crate) trait RwLockExt<T> {
    /// A read guard, whether or not a writer panicked.
    fn reading(&self) -> RwLockReadGuard<'_, T>;
    /// The write guard, whether or not a holder panicked.
    fn writing(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn reading(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn writing(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}
