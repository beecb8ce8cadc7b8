//! A value in memcached that does not fit the model (a column of the wrong
//! type, under the right fingerprint: written by a buggy client, or
//! damaged) is a miss: the level drops it, the primary answers, the event
//! is counted, and the primary's row replaces it.
#![cfg(all(feature = "memcache", feature = "sqlite"))]

use std::sync::Arc;

use memcache::exp::AsyncMetaClient;
use octopus::{CachePolicy, Dao, Key, Model, Plan};
use octopus_adapters::sqlite::SqliteStore;
use octopus_test_support::memcache::{memcache_addr, memcache_store};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "meters")]
struct Meter {
    #[octopus(key)]
    id: u64,
    reading: i64,
}

/// The value format's bytes (see the memcache module docs) for a `meters`
/// row with key `id` whose `reading` is text.
fn wrong_typed(id: u64) -> Vec<u8> {
    let key = format!("u{id}");
    let mut out = vec![1u8];
    out.extend_from_slice(&Meter::SCHEMA.fingerprint().to_le_bytes());
    out.push(key.len() as u8);
    out.extend_from_slice(key.as_bytes());
    out.push(2); // columns
    out.push(4); // uint
    out.push(id as u8);
    out.push(6); // text
    out.push(3);
    out.extend_from_slice(b"abc");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_value_of_the_wrong_type_is_a_counted_miss() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Arc::new(SqliteStore::open(dir.path().join("m.db")).await.unwrap());
    let remote = Arc::new(memcache_store("undecodable").await);
    let plan = Arc::new(
        Plan::builder(primary)
            .cache(remote.clone(), CachePolicy::Invalidate)
            .build()
            .unwrap(),
    );
    let meters: Dao<Meter> = Dao::open(plan.clone()).await.unwrap();
    let meter = Meter { id: 7, reading: 42 };
    meters.create(&mut meter.clone()).await.unwrap();

    let wire = remote.cache_key(Meter::SCHEMA, &Key::UInt(7));
    let raw = AsyncMetaClient::connect(memcache_addr().to_string())
        .await
        .unwrap();
    raw.set(&wire, wrong_typed(7)).send().await.unwrap();

    assert_eq!(meters.read(7u64).await.unwrap(), Some(meter.clone()));
    let level = &plan.stats().levels[0];
    assert_eq!((level.undecodable, level.hits), (1, 0), "{level:?}");
    assert_eq!(plan.stats().primary_reads, 1);
    // The primary's row replaced it.
    assert_eq!(meters.read(7u64).await.unwrap(), Some(meter));
    let stats = plan.stats();
    assert_eq!(
        (
            stats.levels[0].hits,
            stats.levels[0].undecodable,
            stats.primary_reads
        ),
        (1, 1, 1),
        "{stats:?}"
    );
}
