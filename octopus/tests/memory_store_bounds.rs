//! The in-process cache honours its capacity bound (least recently used goes
//! first) and its TTL.

use std::time::Duration;

use octopus::{Key, MemoryOptions, MemoryStore, Model, Record, Store, Value};
use octopus_test_support::{check, eventually};

#[derive(Debug, Clone, PartialEq, Model)]
struct Entry {
    #[octopus(key)]
    id: u64,
    v: String,
}

fn rec(id: u64) -> Record {
    Record::new(vec![Value::UInt(id), Value::Text(format!("v{id}"))])
}

#[tokio::test]
async fn capacity_evicts_the_least_recently_used_row() {
    let store = MemoryStore::with_options(MemoryOptions::new().capacity(3));
    for id in 1..=3 {
        store.upsert(Entry::SCHEMA, &rec(id)).await.unwrap();
    }
    // Touch 1 so that 2 is now the least recently used.
    assert!(
        store
            .get(Entry::SCHEMA, &Key::UInt(1))
            .await
            .unwrap()
            .is_some()
    );
    store.upsert(Entry::SCHEMA, &rec(4)).await.unwrap();

    assert_eq!(store.len(), 3);
    assert!(
        store
            .get(Entry::SCHEMA, &Key::UInt(2))
            .await
            .unwrap()
            .is_none(),
        "LRU row evicted"
    );
    for id in [1, 3, 4] {
        assert_eq!(
            store.get(Entry::SCHEMA, &Key::UInt(id)).await.unwrap(),
            Some(rec(id))
        );
    }
}

#[tokio::test]
async fn a_large_bound_holds_at_most_its_capacity() {
    let store = MemoryStore::with_options(MemoryOptions::new().capacity(2048));
    for id in 0..10_000 {
        store.upsert(Entry::SCHEMA, &rec(id)).await.unwrap();
    }
    assert!(store.len() <= 2048, "held {}", store.len());
    assert!(store.len() >= 1900, "held only {}", store.len());
}

#[tokio::test]
async fn rows_expire_after_the_ttl() {
    let ttl = Duration::from_millis(50);
    let store = MemoryStore::with_options(MemoryOptions::new().ttl(ttl));
    let written = std::time::Instant::now();
    store.upsert(Entry::SCHEMA, &rec(1)).await.unwrap();
    assert!(
        store
            .get(Entry::SCHEMA, &Key::UInt(1))
            .await
            .unwrap()
            .is_some()
    );
    eventually("the row to expire", Duration::from_secs(5), async || {
        let row = store.get(Entry::SCHEMA, &Key::UInt(1)).await.unwrap();
        check(row.is_none(), row)
    })
    .await;
    assert!(written.elapsed() >= ttl, "expired before its TTL");
    // An expired row does not block an insert of the same key.
    store.insert(Entry::SCHEMA, &rec(1)).await.unwrap();
}

#[tokio::test]
async fn concurrent_readers_and_writers_agree() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..500u64 {
                let id = t * 1000 + i;
                store.upsert(Entry::SCHEMA, &rec(id)).await.unwrap();
                assert_eq!(
                    store.get(Entry::SCHEMA, &Key::UInt(id)).await.unwrap(),
                    Some(rec(id))
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.len(), 4000);
}

fn lookup_token(lookup: octopus::Lookup) -> octopus::FillToken {
    match lookup {
        octopus::Lookup::Miss(token) => token,
        octopus::Lookup::Hit(r) => panic!("expected a miss, got {r:?}"),
    }
}

/// A reader looked a key up (absent) and loaded the old row; a writer then
/// invalidated the key; a full cache evicted entries meanwhile. The
/// reader's fill must still fail, whether the marker survived (rows go
/// first) or had to go (only markers were left to evict).
#[tokio::test]
async fn an_eviction_never_lets_a_late_fill_restore_an_overwritten_row() {
    use octopus::Cache;
    for rows_first in [true, false] {
        let cache = MemoryStore::with_options(MemoryOptions::new().capacity(4));
        let key = Key::UInt(1);
        let token = lookup_token(cache.lookup(Entry::SCHEMA, &key).await.unwrap());
        cache.invalidate(Entry::SCHEMA, &key).await.unwrap();
        for id in 2..=9 {
            if rows_first {
                Cache::put(&cache, Entry::SCHEMA, &rec(id)).await.unwrap();
            } else {
                cache
                    .invalidate(Entry::SCHEMA, &Key::UInt(id))
                    .await
                    .unwrap();
            }
        }
        assert_eq!(cache.len(), 4);
        let filled = cache.fill(Entry::SCHEMA, &rec(1), token).await.unwrap();
        assert!(
            !filled,
            "a fill from before the invalidation succeeded after {} were evicted",
            if rows_first { "rows" } else { "markers" }
        );
        assert!(
            cache.get(Entry::SCHEMA, &key).await.unwrap().is_none(),
            "the old row is cached"
        );
        // A lookup after the eviction fills as usual.
        let token = lookup_token(cache.lookup(Entry::SCHEMA, &key).await.unwrap());
        assert!(cache.fill(Entry::SCHEMA, &rec(1), token).await.unwrap());
    }
}

/// A reader looked a key up (absent); a writer invalidated it and another
/// reader filled the new row over the marker; then that row was evicted
/// (or expired). The first reader's late fill of the old row must fail.
#[tokio::test]
async fn a_late_fill_fails_after_the_newer_row_is_evicted_or_expired() {
    use octopus::Cache;
    for expire in [false, true] {
        let cache = if expire {
            MemoryStore::with_options(
                MemoryOptions::new()
                    .capacity(4)
                    .ttl(Duration::from_millis(30)),
            )
        } else {
            MemoryStore::with_options(MemoryOptions::new().capacity(4))
        };
        let key = Key::UInt(1);
        let late = lookup_token(cache.lookup(Entry::SCHEMA, &key).await.unwrap());
        cache.invalidate(Entry::SCHEMA, &key).await.unwrap();
        let token = lookup_token(cache.lookup(Entry::SCHEMA, &key).await.unwrap());
        let newer = Record::new(vec![Value::UInt(1), Value::Text("new".into())]);
        assert!(cache.fill(Entry::SCHEMA, &newer, token).await.unwrap());
        if expire {
            eventually("the row to expire", Duration::from_secs(5), async || {
                let row = cache.get(Entry::SCHEMA, &key).await.unwrap();
                check(row.is_none(), row)
            })
            .await;
        } else {
            for id in 2..=9 {
                Cache::put(&cache, Entry::SCHEMA, &rec(id)).await.unwrap();
            }
            assert!(cache.get(Entry::SCHEMA, &key).await.unwrap().is_none());
        }
        let filled = cache.fill(Entry::SCHEMA, &rec(1), late).await.unwrap();
        assert!(
            !filled,
            "a fill from before the write succeeded after the newer row was {}",
            if expire { "expired" } else { "evicted" }
        );
    }
}
