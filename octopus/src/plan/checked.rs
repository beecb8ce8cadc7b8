//! Tables the plan has not yet checked in its primary: a plan with a durable
//! fallback opens while its primary is down (see `Plan::ensure_schema`), and
//! then checks each such table before the primary is first asked about it,
//! so no read or write reaches a table whose shape was never compared with
//! the model.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Plan;
use crate::Result;
use crate::schema::Schema;

/// The tables left unchecked at open.
#[derive(Default)]
pub(super) struct Unchecked {
    /// Whether any is left: the fast path of every primary call.
    any: AtomicBool,
    tables: Mutex<HashSet<&'static str>>,
}

impl Unchecked {
    fn tables(&self) -> std::sync::MutexGuard<'_, HashSet<&'static str>> {
        // Every critical section leaves the set consistent.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn insert(&self, schema: &'static Schema) {
        self.tables().insert(schema.table());
        self.any.store(true, Ordering::SeqCst);
    }

    pub(super) fn remove(&self, schema: &'static Schema) {
        let mut tables = self.tables();
        tables.remove(schema.table());
        self.any.store(!tables.is_empty(), Ordering::SeqCst);
    }

    fn contains(&self, schema: &'static Schema) -> bool {
        self.any.load(Ordering::SeqCst) && self.tables().contains(schema.table())
    }
}

impl Plan {
    /// Ensures `schema`'s table in the primary if the plan opened without
    /// checking it: the error is the check's (a mismatch names the column;
    /// `Unavailable` while the primary is still down).
    pub(super) async fn checked(&self, schema: &'static Schema) -> Result<()> {
        if !self.unchecked.contains(schema) {
            return Ok(());
        }
        self.breaker
            .call(self.primary.ensure_schema(schema))
            .await?;
        self.unchecked.remove(schema);
        tracing::info!(target: "octopus::plan", table = schema.table(), "table checked in the primary");
        Ok(())
    }
}
