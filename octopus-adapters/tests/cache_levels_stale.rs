//! Readers never see a row older than an acknowledged write through two
//! real cache levels (the in-process cache and memcached, in either order)
//! over MySQL. 300 keys are each updated (or deleted) once while 12
//! readers read them; every read is checked against the history: a read
//! that started after the key's write was acknowledged must return the new
//! state, and once every write is acknowledged every key reads new.
#![cfg(all(feature = "memcache", feature = "mysql"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use octopus::{Cache, CachePolicy, Dao, MemoryStore, Model, Plan};
use octopus_test_support::memcache::memcache_store;
use octopus_test_support::mysql::mysql_store;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "tallies")]
struct Tally {
    #[octopus(key)]
    id: u64,
    count: i64,
}

const KEYS: u64 = 300;
const READERS: usize = 12;

#[derive(Clone, Copy, Debug)]
enum Op {
    Update,
    Delete,
}

#[derive(Clone, Copy, Debug)]
enum Order {
    MemoryFirst,
    MemcacheFirst,
}

/// One read: the logical time it started, the key, and what it returned.
struct Read {
    start: u64,
    key: u64,
    value: Option<i64>,
}

async fn check(name: &str, op: Op, order: Order) {
    let primary = Arc::new(mysql_store(name).await);
    let memory: Arc<dyn Cache> = Arc::new(MemoryStore::new());
    let remote: Arc<dyn Cache> = Arc::new(memcache_store(name).await);
    let (first, second) = match order {
        Order::MemoryFirst => (memory, remote),
        Order::MemcacheFirst => (remote, memory),
    };
    let plan = Arc::new(
        Plan::builder(primary)
            .cache(first, CachePolicy::Invalidate)
            .cache(second, CachePolicy::Invalidate)
            .build()
            .unwrap(),
    );
    let dao: Dao<Tally> = Dao::open(plan.clone()).await.unwrap();
    for id in 0..KEYS {
        dao.create(&mut Tally { id, count: 0 }).await.unwrap();
        // Cached in both levels before the writes start.
        dao.read(id).await.unwrap().unwrap();
    }

    // Logical time: every read start and every acknowledgement takes a tick.
    let clock = Arc::new(AtomicU64::new(1));
    let acked: Arc<Vec<AtomicU64>> =
        Arc::new((0..KEYS).map(|_| AtomicU64::new(u64::MAX)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (dao, clock, done) = (dao.clone(), clock.clone(), done.clone());
            tokio::spawn(async move {
                let mut reads = Vec::new();
                let mut i = r as u64 * 7;
                // Until the writer is done, then one more pass over every key.
                let mut after = 0;
                while after < KEYS {
                    if done.load(Ordering::SeqCst) {
                        after += 1;
                    }
                    let key = i % KEYS;
                    i += 1;
                    let start = clock.fetch_add(1, Ordering::SeqCst);
                    let value = dao.read(key).await.unwrap().map(|t| t.count);
                    reads.push(Read { start, key, value });
                    // A hit in the in-process cache never waits: let the
                    // writers run.
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (dao, clock, acked) = (dao.clone(), clock.clone(), acked.clone());
            tokio::spawn(async move {
                for id in (w..KEYS).step_by(4) {
                    match op {
                        Op::Update => {
                            dao.update(&mut Tally { id, count: 1 }).await.unwrap();
                        }
                        Op::Delete => {
                            dao.delete(id).await.unwrap();
                        }
                    }
                    acked[id as usize]
                        .store(clock.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let new = match op {
        Op::Update => Some(1),
        Op::Delete => None,
    };
    let mut stale_keys = std::collections::BTreeSet::new();
    let mut stale_reads = 0;
    let mut total = 0;
    for r in readers {
        for read in r.await.unwrap() {
            total += 1;
            if read.start > acked[read.key as usize].load(Ordering::SeqCst) && read.value != new {
                stale_reads += 1;
                stale_keys.insert(read.key);
            }
        }
    }
    let mut stale_at_end = Vec::new();
    for id in 0..KEYS {
        if dao.read(id).await.unwrap().map(|t| t.count) != new {
            stale_at_end.push(id);
        }
    }
    assert!(
        stale_keys.is_empty() && stale_at_end.is_empty(),
        "{op:?}, {order:?}: {stale_reads} of {total} reads started after the write's acknowledgement returned the old row, on {} of {KEYS} keys (first: {:?}); {} keys still stale at the end",
        stale_keys.len(),
        stale_keys.iter().take(10).collect::<Vec<_>>(),
        stale_at_end.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_memory_then_memcached() {
    check("stale_upd_mem_first", Op::Update, Order::MemoryFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_memory_then_memcached() {
    check("stale_del_mem_first", Op::Delete, Order::MemoryFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_memcached_then_memory() {
    check("stale_upd_mc_first", Op::Update, Order::MemcacheFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_memcached_then_memory() {
    check("stale_del_mc_first", Op::Delete, Order::MemcacheFirst).await;
}
