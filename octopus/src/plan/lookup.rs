//! A level's lookups: under the level's breaker, and given up after half
//! the level's deadline ([`Cache::deadline`]). A hanging cache then costs a
//! read half its deadline, not all of it, even before its breaker opens:
//! the read goes on to the next level or the primary as if the lookup had
//! failed, and the breaker counts it as a failure.

use std::time::Duration;

use super::{Level, Plan};
use crate::cache::{Cache, Lookup};
use crate::schema::Schema;
use crate::value::Key;
use crate::{Error, Result};

impl Plan {
    /// `key` looked up in `level`.
    pub(super) async fn lookup_in(
        &self, level: &Level, schema: &'static Schema, key: &Key,
    ) -> Result<Lookup> {
        within_half_deadline(level, level.cache.lookup(schema, key)).await
    }

    /// `keys` looked up in `level`, in one call.
    pub(super) async fn lookup_many_in(
        &self, level: &Level, schema: &'static Schema, keys: &[Key],
    ) -> Result<Vec<Lookup>> {
        within_half_deadline(level, level.cache.lookup_many(schema, keys)).await
    }
}

/// `call` under `level`'s breaker, given up after half the level's
/// deadline (if it has one).
async fn within_half_deadline<T>(
    level: &Level, call: impl Future<Output = Result<T>>,
) -> Result<T> {
    let Some(deadline) = level.cache.deadline() else {
        return level.breaker.call(call).await;
    };
    let out = async {
        let permit = level.breaker.acquire()?;
        let budget = deadline / 2;
        match tokio::time::timeout(budget, call).await {
            Ok(out) => {
                permit.record(&out);
                out
            }
            Err(_) => {
                level.counters.gave_up.incr();
                permit.record(&Err::<(), _>(gave_up(level.cache.as_ref(), budget)));
                Err(gave_up(level.cache.as_ref(), budget))
            }
        }
    }
    .await;
    // A breaker refusing counts as the level failing (`trust.rs`).
    level.health.record(&out);
    out
}

fn gave_up(cache: &dyn Cache, budget: Duration) -> Error {
    Error::unavailable(
        cache.name(),
        format!(
            "no answer within {} ms, half its deadline: read on without it",
            budget.as_millis()
        ),
    )
}
