//! An invalidation that races a fill always wins, for every cache store:
//! a reader loads the old row, a writer updates and invalidates, the
//! reader's fill arrives late and is dropped; the next read returns the new
//! row. The interleaving is forced, not left to chance.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use octopus::{
    BoxFuture, Cache, Dao, Key, Lookup, MemoryStore, Model, Plan, Record, Result, Schema, Store,
};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "prices")]
struct Price {
    #[octopus(key)]
    sku: String,
    cents: i64,
}

/// A primary whose next `get` (once armed) loads its row and then waits for
/// the test to let it answer.
struct Paused {
    inner: MemoryStore,
    armed: AtomicBool,
    loaded: Notify,
    release: Notify,
}

impl Paused {
    fn new() -> Arc<Self> {
        Arc::new(Paused {
            inner: MemoryStore::new(),
            armed: AtomicBool::new(false),
            loaded: Notify::new(),
            release: Notify::new(),
        })
    }
}

impl Store for Paused {
    fn name(&self) -> &str {
        "paused"
    }
    fn ensure_schema<'a>(&'a self, s: &'static Schema) -> BoxFuture<'a, Result<()>> {
        self.inner.ensure_schema(s)
    }
    fn get<'a>(&'a self, s: &'static Schema, k: &'a Key) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async move {
            let row = self.inner.get(s, k).await;
            if self.armed.swap(false, Ordering::SeqCst) {
                self.loaded.notify_one();
                self.release.notified().await;
            }
            row
        })
    }
    fn get_many<'a>(
        &'a self,
        s: &'static Schema,
        k: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        self.inner.get_many(s, k)
    }
    fn insert<'a>(&'a self, s: &'static Schema, r: &'a Record) -> BoxFuture<'a, Result<()>> {
        self.inner.insert(s, r)
    }
    fn upsert<'a>(&'a self, s: &'static Schema, r: &'a Record) -> BoxFuture<'a, Result<()>> {
        self.inner.upsert(s, r)
    }
    fn update<'a>(
        &'a self,
        s: &'static Schema,
        r: &'a Record,
        v: Option<u64>,
    ) -> BoxFuture<'a, Result<()>> {
        self.inner.update(s, r, v)
    }
    fn delete<'a>(&'a self, s: &'static Schema, k: &'a Key) -> BoxFuture<'a, Result<bool>> {
        self.inner.delete(s, k)
    }
    fn scan<'a>(
        &'a self,
        s: &'static Schema,
        a: Option<&'a Key>,
        l: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        self.inner.scan(s, a, l)
    }
}

/// Runs the race against `cache`. `through_plan`: the old row was written
/// through the plan (so the cache holds an invalidation marker) rather than
/// straight into the primary (so the cache holds nothing).
async fn late_fill_loses(cache: Arc<dyn Cache>, through_plan: bool) {
    let primary = Paused::new();
    let plan = Arc::new(Plan::from_arc(primary.clone()).with_cache_arc(cache.clone()));
    let prices: Dao<Price> = Dao::open(plan.clone()).await.unwrap();
    let mut price = Price {
        sku: "tea".into(),
        cents: 100,
    };
    if through_plan {
        prices.create(&mut price).await.unwrap();
    } else {
        primary
            .inner
            .insert(Price::SCHEMA, &price.to_record().unwrap())
            .await
            .unwrap();
    }

    // The reader misses the cache, loads the old row, and stalls.
    primary.armed.store(true, Ordering::SeqCst);
    let reader = {
        let prices = prices.clone();
        tokio::spawn(async move { prices.read("tea").await })
    };
    primary.loaded.notified().await;

    // The writer updates the primary and invalidates the cache meanwhile.
    price.cents = 250;
    prices.update(&mut price).await.unwrap();

    // The reader answers with the row it loaded (it overlapped the write),
    // and its fill of the old row is dropped.
    primary.release.notify_one();
    assert_eq!(reader.await.unwrap().unwrap().unwrap().cents, 100);
    let stats = plan.stats();
    assert_eq!(stats.levels[0].fill_races_lost, 1, "{stats:?}");
    assert_eq!(stats.levels[0].fills, 0, "{stats:?}");

    // The cache holds no old row, and the next read returns the new one.
    assert!(matches!(
        cache
            .lookup(Price::SCHEMA, &Key::from("tea"))
            .await
            .unwrap(),
        Lookup::Miss(_)
    ));
    assert_eq!(prices.read("tea").await.unwrap().unwrap().cents, 250);
    assert_eq!(plan.stats().levels[0].fills, 1);
    assert_eq!(prices.read("tea").await.unwrap().unwrap().cents, 250);
    assert_eq!(plan.stats().levels[0].hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cache_late_fill_loses_to_invalidation() {
    late_fill_loses(Arc::new(MemoryStore::new()), true).await;
    late_fill_loses(Arc::new(MemoryStore::new()), false).await;
}

#[cfg(feature = "memcache")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcache_late_fill_loses_to_invalidation() {
    late_fill_loses(Arc::new(support::memcache_store("race-marker").await), true).await;
    late_fill_loses(
        Arc::new(support::memcache_store("race-absent").await),
        false,
    )
    .await;
}
