//! A plan of real stores: an in-process cache in front of memcached in front
//! of SQLite. Hits fill the levels in front; a cache that is down is skipped
//! and never fails a read or a write the primary can serve.
#![cfg(all(feature = "memcache", feature = "sqlite"))]

use std::sync::Arc;
use std::time::Duration;

use octopus::{CachePolicy, Dao, MemoryStore, Model, Plan, WriteOutcome};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::sqlite::SqliteStore;
use octopus_test_support::eventually;
use octopus_test_support::memcache::memcache_store;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "profiles")]
struct Profile {
    #[octopus(key)]
    id: u64,
    name: String,
}

async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        SqliteStore::open(dir.path().join("p.db")).await.unwrap(),
        dir,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_fills_the_levels_in_front_of_it() {
    let (primary, _dir) = sqlite().await;
    let primary = Arc::new(primary);
    let remote = Arc::new(memcache_store("levels").await);
    let plan = |local: Arc<MemoryStore>| {
        Arc::new(
            Plan::builder(primary.clone())
                .cache(local, CachePolicy::Invalidate)
                .cache(remote.clone(), CachePolicy::Invalidate)
                .build()
                .unwrap(),
        )
    };
    let first = plan(Arc::new(MemoryStore::new()));
    let profiles: Dao<Profile> = Dao::open(first.clone()).await.unwrap();
    profiles
        .create(&mut Profile {
            id: 1,
            name: "ann".into(),
        })
        .await
        .unwrap();
    profiles.read(1u64).await.unwrap().unwrap();
    let s = first.stats();
    assert_eq!(
        (s.primary_reads, s.levels[0].fills, s.levels[1].fills),
        (1, 1, 1),
        "{s:?}"
    );

    // Another process (a fresh local cache) finds it in memcached and fills
    // its local level from there, without touching the primary.
    let second = plan(Arc::new(MemoryStore::new()));
    let profiles: Dao<Profile> = Dao::new(second.clone());
    assert_eq!(profiles.read(1u64).await.unwrap().unwrap().name, "ann");
    let s = second.stats();
    assert_eq!(
        (s.primary_reads, s.levels[1].hits, s.levels[0].fills),
        (0, 1, 1),
        "{s:?}"
    );
    profiles.read(1u64).await.unwrap();
    assert_eq!(second.stats().levels[0].hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_levels_hold_the_new_row() {
    let (primary, _dir) = sqlite().await;
    let local = Arc::new(MemoryStore::new());
    let plan = Arc::new(
        Plan::builder(Arc::new(primary))
            .cache(local.clone(), CachePolicy::WriteThrough)
            .build()
            .unwrap(),
    );
    let profiles: Dao<Profile> = Dao::open(plan.clone()).await.unwrap();
    let mut p = Profile {
        id: 2,
        name: "bo".into(),
    };
    profiles.create(&mut p).await.unwrap();
    p.name = "bob".into();
    profiles.update(&mut p).await.unwrap();
    assert_eq!(profiles.read(2u64).await.unwrap().unwrap().name, "bob");
    assert_eq!(
        plan.stats().primary_reads,
        0,
        "served by the written-through cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cache_never_fails_reads_or_writes() {
    let (primary, _dir) = sqlite().await;
    // A memcached address nothing listens on: every call is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = MemcacheStore::with_options(
        MemcacheOptions::new([format!("127.0.0.1:{port}")])
            .timeout(Duration::from_millis(100))
            .connect_timeout(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let plan = Arc::new(Plan::from_arc(Arc::new(primary)).with_cache(dead));
    let profiles: Dao<Profile> = Dao::open(plan.clone()).await.unwrap();

    let mut p = Profile {
        id: 3,
        name: "cy".into(),
    };
    assert_eq!(
        profiles.create(&mut p).await.unwrap(),
        WriteOutcome::Primary
    );
    p.name = "cyd".into();
    profiles.update(&mut p).await.unwrap();
    assert_eq!(profiles.read(3u64).await.unwrap().unwrap().name, "cyd");

    let s = plan.stats();
    assert_eq!(s.levels[0].skipped, 1, "{s:?}");
    assert_eq!(s.levels[0].write_errors, 2, "{s:?}");
    // The failed invalidations (both of key 3: coalesced into one) are
    // retried in the background for as long as the cache does not answer.
    let s = eventually(
        "8 invalidation retries",
        Duration::from_secs(10),
        async || {
            let s = plan.stats();
            if s.invalidation_retries >= 8 {
                Ok(s)
            } else {
                Err(s)
            }
        },
    )
    .await;
    assert_eq!(s.invalidations_abandoned, 0, "{s:?}");
}
