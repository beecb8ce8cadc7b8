//! The in-process cache honours its capacity bound (least recently used goes
//! first) and its TTL.

use std::time::Duration;

use octopus::{Key, MemoryStore, Model, Record, Store, Value};

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
    let store = MemoryStore::builder().capacity(3).build();
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
    let store = MemoryStore::builder().capacity(2048).build();
    for id in 0..10_000 {
        store.upsert(Entry::SCHEMA, &rec(id)).await.unwrap();
    }
    assert!(store.len() <= 2048, "held {}", store.len());
    assert!(store.len() >= 1900, "held only {}", store.len());
}

#[tokio::test]
async fn rows_expire_after_the_ttl() {
    let store = MemoryStore::builder()
        .ttl(Duration::from_millis(50))
        .build();
    store.upsert(Entry::SCHEMA, &rec(1)).await.unwrap();
    assert!(
        store
            .get(Entry::SCHEMA, &Key::UInt(1))
            .await
            .unwrap()
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        store
            .get(Entry::SCHEMA, &Key::UInt(1))
            .await
            .unwrap()
            .is_none()
    );
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
