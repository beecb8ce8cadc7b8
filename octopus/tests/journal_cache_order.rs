//! Journaled writes of one key reach a cache in journal order: during an
//! outage the caches are what other servers read, so the last acknowledged
//! row must be the one cached, even when an earlier write's cache step is
//! slow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions};
use octopus::{
    BoxFuture, Cache, CachePolicy, Dao, FillToken, Key, Lookup, MemoryStore, Model, Plan, Record,
    Result, Schema, WriteOutcome,
};
use octopus_test_support::{Scripted, check, poll_until};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "counters")]
struct Counter {
    #[octopus(key)]
    id: u64,
    value: i64,
}

/// The in-process cache, whose first put waits for a gate (a slow
/// network hop on the first write's cache step).
struct SlowFirstPut {
    inner: MemoryStore,
    gate: Arc<Notify>,
    reached: Arc<Notify>,
    first: AtomicBool,
}

impl Cache for SlowFirstPut {
    fn name(&self) -> &str {
        "slow-first-put"
    }

    fn lookup<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Lookup>> {
        self.inner.lookup(schema, key)
    }

    fn fill<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, token: FillToken,
    ) -> BoxFuture<'a, Result<bool>> {
        self.inner.fill(schema, record, token)
    }

    fn put<'a>(&'a self, schema: &'static Schema, record: &'a Record) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.first.swap(false, Ordering::SeqCst) {
                let opened = self.gate.notified();
                self.reached.notify_one();
                opened.await;
            }
            Cache::put(&self.inner, schema, record).await
        })
    }

    fn invalidate<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<()>> {
        self.inner.invalidate(schema, key)
    }
}

/// A scripted primary, the slow-first-put cache, and a plan over both with
/// a journal in `dir`.
fn setup(dir: &std::path::Path) -> (Arc<Scripted>, Arc<SlowFirstPut>, Arc<Plan>) {
    let primary = Scripted::new();
    let cache = Arc::new(SlowFirstPut {
        inner: MemoryStore::new(),
        gate: Arc::new(Notify::new()),
        reached: Arc::new(Notify::new()),
        first: AtomicBool::new(true),
    });
    let plan = Arc::new(
        Plan::builder(primary.clone())
            .cache(cache.clone(), CachePolicy::Invalidate)
            .journal(Journal::open(dir, JournalOptions::default()).unwrap())
            .build()
            .unwrap(),
    );
    (primary, cache, plan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_writes_of_one_key_reach_the_cache_in_journal_order() {
    let dir = tempfile::tempdir().unwrap();
    let (primary, cache, plan) = setup(dir.path());
    let counters: Dao<Counter> = Dao::open(plan.clone()).await.unwrap();
    counters
        .create(&mut Counter { id: 1, value: 0 })
        .await
        .unwrap();
    primary.set_down(true);

    // The first journaled write stops in its cache step.
    let reached = cache.reached.notified();
    let first = {
        let counters = counters.clone();
        tokio::spawn(async move { counters.update(&mut Counter { id: 1, value: 1 }).await })
    };
    reached.await;
    // A second write of the key, acknowledged while the first is in its
    // cache step (or queued behind it).
    let mut second = {
        let counters = counters.clone();
        tokio::spawn(async move { counters.update(&mut Counter { id: 1, value: 2 }).await })
    };
    // The second write either finishes (its row cached before the first's)
    // or waits for the first: give it the chance to finish, then let the
    // first go on. Either way the outcome below must hold.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut second).await;
    cache.gate.notify_one();
    assert_eq!(first.await.unwrap().unwrap(), WriteOutcome::Journaled);
    let second = match early {
        Ok(done) => done,
        Err(_) => second.await,
    };
    assert_eq!(second.unwrap().unwrap(), WriteOutcome::Journaled);

    // Another server reading the shared cache sees the last write.
    let cached = match cache
        .inner
        .lookup(Counter::SCHEMA, &Key::UInt(1))
        .await
        .unwrap()
    {
        Lookup::Hit(r) => Counter::from_record(r).unwrap(),
        Lookup::Miss(_) => panic!("the journaled row is not cached"),
    };
    assert_eq!(cached.value, 2, "the cache holds an older journaled row");
    // This server reads its journal.
    assert_eq!(counters.read(1u64).await.unwrap().unwrap().value, 2);
}

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "ledgers")]
struct Ledger {
    #[octopus(key)]
    id: u64,
    total: i64,
    #[octopus(version)]
    version: u64,
}

/// A journaled write whose cache put is slow, and replay refusing its
/// entry meanwhile (another server wrote a newer version): replay's
/// invalidation of the key waits for the put, so the refused row is not
/// left cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_invalidates_after_a_slow_journaled_put_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (primary, cache, plan) = setup(dir.path());
    let ledgers: Dao<Ledger> = Dao::open(plan.clone()).await.unwrap();
    let mut ledger = Ledger {
        id: 1,
        total: 1,
        version: 0,
    };
    ledgers.create(&mut ledger).await.unwrap();
    primary.set_down(true);
    let reached = cache.reached.notified();
    let journaled = {
        let ledgers = ledgers.clone();
        let mut update = ledger.clone();
        update.total = 2;
        tokio::spawn(async move { ledgers.update(&mut update).await })
    };
    reached.await;
    // Another server wrote version 5; the primary answers again, and
    // replay refuses the journaled update.
    let newer = Ledger {
        id: 1,
        total: 500,
        version: 5,
    };
    use octopus::Store;
    primary
        .inner
        .upsert(Ledger::SCHEMA, &newer.to_record().unwrap())
        .await
        .unwrap();
    primary.set_down(false);
    // Give replay the chance to refuse the entry and invalidate before the
    // put lands (it must wait for it instead).
    let refused_early = poll_until(Duration::from_secs(1), async || {
        check(plan.stats().fallback.unwrap().dead_letters == 1, ())
    })
    .await
    .is_ok();
    cache.gate.notify_one();
    assert_eq!(journaled.await.unwrap().unwrap(), WriteOutcome::Journaled);
    tokio::time::timeout(Duration::from_secs(10), plan.drained())
        .await
        .expect("the journal drains");
    assert_eq!(plan.stats().fallback.unwrap().dead_letters, 1);
    assert_eq!(
        ledgers.read(1u64).await.unwrap(),
        Some(newer),
        "the refused journaled row stayed cached (replay's invalidation ran before its put; refused before the put landed: {refused_early})"
    );
}
