//! The in-process cache: [`Cache`] for [`MemoryStore`], with invalidation
//! markers and guarded fills.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{ABSENT, Change, MemoryStore, each_key, table_id};
use crate::Result;
use crate::cache::{Cache, FillToken, Lookup};
use crate::schema::Schema;
use crate::store::{BoxFuture, check_key};
use crate::value::{Key, Record};

impl MemoryStore {
    /// Fills `record` if its key is unchanged since the lookup that gave
    /// `token`, kept no later than `until` if given.
    fn fill_row(
        &self, schema: &'static Schema, record: &Record, token: FillToken, until: Option<Instant>,
    ) -> Result<bool> {
        self.modify_row(schema, record, |key, current| {
            let i = self.shard_of(table_id(schema), key);
            let unchanged = match (token, current) {
                (FillToken::Absent, None) => true,
                // Still absent, and nothing written since the lookup was
                // dropped (read under the shard's lock, as evictions and
                // expiries write it).
                (FillToken::Cas(seen), None) if seen & ABSENT != 0 => {
                    self.forgotten[i].load(Ordering::Relaxed) <= seen & !ABSENT
                }
                (FillToken::Cas(cas), Some(c)) => c.record.is_none() && c.cas == cas,
                _ => false,
            };
            Ok(match self.cached_until(record, until) {
                Change::Put(Some(row), ttl) if unchanged => (Change::Put(Some(row), ttl), true),
                _ => (Change::Keep, false),
            })
        })
    }

    /// Puts `record` (a row put by a plan expires like a filled one), kept
    /// no later than `until` if given: past it, a marker takes the key.
    fn put_row(
        &self, schema: &'static Schema, record: &Record, until: Option<Instant>,
    ) -> Result<()> {
        self.modify_row(schema, record, |_, _| {
            Ok((
                match self.cached_until(record, until) {
                    Change::Put(None, _) => Change::Put(None, Some(self.marker_ttl())),
                    change => change,
                },
                (),
            ))
        })
    }

    /// The row as a plan caches it ([`MemoryStore::cached`]), its life cut
    /// at `until`; a marker (`Put(None, …)`) if `until` has passed.
    fn cached_until(&self, record: &Record, until: Option<Instant>) -> Change {
        match (self.cached(record), until) {
            (Change::Put(row, Some(ttl)), Some(until)) => {
                let left = until.saturating_duration_since(Instant::now()).min(ttl);
                if left.is_zero() {
                    Change::Put(None, None)
                } else {
                    Change::Put(row, Some(left))
                }
            }
            (change, _) => change,
        }
    }
}

impl Cache for MemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn lookup<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Lookup>> {
        Box::pin(async move {
            check_key(schema, key)?;
            Ok(self.find(schema, key, Instant::now()))
        })
    }

    fn lookup_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Lookup>>> {
        Box::pin(async move { each_key(schema, keys, |k, now| self.find(schema, k, now)) })
    }

    fn fill<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, token: FillToken,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.fill_row(schema, record, token, None) })
    }

    fn put<'a>(&'a self, schema: &'static Schema, record: &'a Record) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.put_row(schema, record, None) })
    }

    fn is_local(&self) -> bool {
        true
    }

    fn fill_until<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, token: FillToken, until: Instant,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.fill_row(schema, record, token, Some(until)) })
    }

    fn put_until<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, until: Instant,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.put_row(schema, record, Some(until)) })
    }

    fn lookup_stale<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async move {
            check_key(schema, key)?;
            Ok(self.find_stale(schema, key, Instant::now()))
        })
    }

    fn invalidate<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            check_key(schema, key)?;
            let ttl = self.marker_ttl();
            self.modify(schema, key.clone(), |_, _| {
                Ok((Change::Put(None, Some(ttl)), ()))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::CACHE_TTL;
    use super::*;
    use crate::Model;
    use crate::value::Value;

    #[derive(Debug, crate::Model)]
    struct Row {
        #[octopus(key)]
        id: u64,
    }

    /// When the entry of `id` expires, if it does.
    fn expires(store: &MemoryStore, id: u64) -> Option<Instant> {
        let key = Key::UInt(id);
        let table = table_id(Row::SCHEMA);
        let shard = super::super::read(&store.shards[store.shard_of(table, &key)]);
        shard.tables[&table][&key].expires
    }

    #[tokio::test]
    async fn rows_a_plan_puts_expire_even_without_a_ttl() {
        let store = MemoryStore::new();
        let before = Instant::now();
        let row = Record::new(vec![Value::UInt(1)]);
        Cache::put(&store, Row::SCHEMA, &row).await.unwrap();
        let at = expires(&store, 1).expect("a put row expires");
        assert!(at >= before + CACHE_TTL && at <= Instant::now() + CACHE_TTL);
        // As a primary it keeps rows.
        crate::Store::upsert(&store, Row::SCHEMA, &Record::new(vec![Value::UInt(2)]))
            .await
            .unwrap();
        assert_eq!(expires(&store, 2), None);
    }

    #[tokio::test]
    async fn a_row_is_stale_only_within_its_window_and_until_a_write_replaces_it() {
        use crate::MemoryOptions;
        use std::time::Duration;
        let ttl = Duration::from_secs(60);
        let window = Duration::from_secs(600);
        let store = MemoryStore::with_options(MemoryOptions::new().ttl(ttl).stale_for(window));
        let row = Record::new(vec![Value::UInt(1)]);
        Cache::put(&store, Row::SCHEMA, &row).await.unwrap();
        let key = Key::UInt(1);
        let at = expires(&store, 1).unwrap();
        let stale = |now| store.find_stale(Row::SCHEMA, &key, now);
        assert_eq!(
            stale(at - Duration::from_millis(1)),
            None,
            "live: not stale"
        );
        assert_eq!(stale(at), Some(row.clone()));
        assert_eq!(stale(at + window - Duration::from_millis(1)), Some(row));
        assert_eq!(stale(at + window), None, "past the window");
        Cache::invalidate(&store, Row::SCHEMA, &key).await.unwrap();
        assert_eq!(stale(at + window / 2), None, "a marker replaced it");
        let plain = MemoryStore::with_options(MemoryOptions::new().ttl(ttl));
        Cache::put(&plain, Row::SCHEMA, &Record::new(vec![Value::UInt(1)]))
            .await
            .unwrap();
        let at = expires(&plain, 1).unwrap();
        assert_eq!(
            plain.find_stale(Row::SCHEMA, &key, at),
            None,
            "no window: never stale"
        );
    }
}
