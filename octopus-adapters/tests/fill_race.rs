//! An invalidation that races a fill always wins, for every cache store:
//! a reader loads the old row, a writer updates and invalidates, the
//! reader's fill arrives late and is dropped; the next read returns the new
//! row. The interleaving is forced, not left to chance.

use std::sync::Arc;

use octopus::{Cache, Dao, Key, Lookup, MemoryStore, Model, Plan, Store};
use octopus_test_support::{Scripted, Step};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "prices")]
struct Price {
    #[octopus(key)]
    sku: String,
    cents: i64,
}

/// Runs the race against `cache`. `through_plan`: the old row was written
/// through the plan (so the cache holds an invalidation marker) rather than
/// straight into the primary (so the cache holds nothing).
async fn late_fill_loses(cache: Arc<dyn Cache>, through_plan: bool) {
    let primary = Scripted::new();
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
    let release = Arc::new(Notify::new());
    primary.then(Step::Gate(release.clone()));
    let reader = {
        let prices = prices.clone();
        tokio::spawn(async move { prices.read("tea").await })
    };
    primary.held.notified().await;

    // The writer updates the primary and invalidates the cache meanwhile.
    price.cents = 250;
    prices.update(&mut price).await.unwrap();

    // The reader answers with the row it loaded (it overlapped the write),
    // and its fill of the old row is dropped.
    release.notify_one();
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
    use octopus_test_support::memcache::memcache_store;
    late_fill_loses(Arc::new(memcache_store("race-marker").await), true).await;
    late_fill_loses(Arc::new(memcache_store("race-absent").await), false).await;
}
