//! What the caches hold after writes that did not end the usual way: a
//! write whose caller gave up after the primary committed, and writes the
//! primary refused because they were built on a cached row it no longer
//! holds.

use std::sync::Arc;
use std::time::Duration;

use octopus::{CachePolicy, Dao, Error, Key, MemoryStore, Model, Plan, Store};
use octopus_test_support::{Scripted, Step, check, eventually};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "ledgers")]
struct Ledger {
    #[octopus(key)]
    id: u64,
    total: i64,
    #[octopus(version)]
    version: u64,
}

fn plan(primary: Arc<dyn Store>) -> Arc<Plan> {
    Arc::new(
        Plan::builder(primary)
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .build()
            .unwrap(),
    )
}

/// Polls `read` until it returns `want`, for up to 5 s; fails with the
/// last value seen.
async fn reads_eventually(dao: &Dao<Ledger>, want: Option<Ledger>) {
    let what = format!("reads to return {want:?}");
    eventually(&what, Duration::from_secs(5), async || {
        let seen = dao.read(1u64).await.unwrap();
        check(seen == want, seen)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cancelled_after_the_primary_committed_still_clears_the_caches() {
    let primary = Scripted::new();
    let plan = plan(primary.clone());
    let dao: Dao<Ledger> = Dao::new(plan.clone());
    let mut ledger = Ledger {
        id: 1,
        total: 10,
        version: 0,
    };
    dao.create(&mut ledger).await.unwrap();
    // Both levels hold version 1.
    assert_eq!(dao.read(1u64).await.unwrap(), Some(ledger.clone()));

    // The update commits, then its answer is slow; the caller gives up.
    let gate = Arc::new(Notify::new());
    primary.then(Step::Gate(gate.clone()));
    let mut changed = ledger.clone();
    changed.total = 20;
    let task = {
        let dao = dao.clone();
        let mut changed = changed.clone();
        tokio::spawn(async move { dao.update(&mut changed).await })
    };
    let key = Key::UInt(1);
    let what = "the primary to commit the update";
    let committed = eventually(what, Duration::from_secs(5), async || {
        let row = primary.inner.get(Ledger::SCHEMA, &key).await.unwrap();
        match row.map(|r| Ledger::from_record(r).unwrap()) {
            Some(l) if l.total == 20 => Ok(l),
            other => Err(other),
        }
    })
    .await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    gate.notify_waiters();

    reads_eventually(&dao, Some(committed)).await;
    // The levels the cancelled write had not followed went to the retry
    // queue, which clears them.
    eventually(
        "the retry queue to run",
        Duration::from_secs(5),
        async || {
            let stats = plan.stats();
            check(stats.invalidation_retries >= 1, stats)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_or_a_missing_row_clears_the_cached_row_that_caused_it() {
    let primary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // Two servers over one primary, each with its own caches.
    let here: Dao<Ledger> = Dao::new(plan(primary.clone()));
    let there: Dao<Ledger> = Dao::new(plan(primary.clone()));
    let mut ledger = Ledger {
        id: 1,
        total: 10,
        version: 0,
    };
    here.create(&mut ledger).await.unwrap();
    let mut stale = here.read(1u64).await.unwrap().unwrap();

    // The other server updates the row: this one's caches still hold
    // version 1, and an update built on it conflicts.
    let mut newer = there.read(1u64).await.unwrap().unwrap();
    newer.total = 30;
    there.update(&mut newer).await.unwrap();
    assert_eq!(here.read(1u64).await.unwrap().unwrap().version, 1);
    stale.total = 11;
    let err = here.update(&mut stale).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(here.read(1u64).await.unwrap(), Some(newer.clone()));

    // The other server deletes it: an update built on the cached row finds
    // nothing, and the row is gone from this server's caches too.
    there.delete(1u64).await.unwrap();
    assert!(here.read(1u64).await.unwrap().is_some(), "cached here");
    let mut cached = here.read(1u64).await.unwrap().unwrap();
    cached.total = 12;
    let err = here.update(&mut cached).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { .. } | Error::Conflict { .. }),
        "{err}"
    );
    assert_eq!(here.read(1u64).await.unwrap(), None);
}

/// The in-process cache, whose invalidations fail while `down` is set (a
/// remote cache that lost its connection).
struct FlakyInvalidations {
    inner: MemoryStore,
    down: std::sync::atomic::AtomicBool,
}

impl octopus::Cache for FlakyInvalidations {
    fn name(&self) -> &str {
        "flaky"
    }

    fn lookup<'a>(
        &'a self, schema: &'static octopus::Schema, key: &'a Key,
    ) -> octopus::BoxFuture<'a, octopus::Result<octopus::Lookup>> {
        self.inner.lookup(schema, key)
    }

    fn fill<'a>(
        &'a self, schema: &'static octopus::Schema, record: &'a octopus::Record,
        token: octopus::FillToken,
    ) -> octopus::BoxFuture<'a, octopus::Result<bool>> {
        self.inner.fill(schema, record, token)
    }

    fn put<'a>(
        &'a self, schema: &'static octopus::Schema, record: &'a octopus::Record,
    ) -> octopus::BoxFuture<'a, octopus::Result<()>> {
        octopus::Cache::put(&self.inner, schema, record)
    }

    fn invalidate<'a>(
        &'a self, schema: &'static octopus::Schema, key: &'a Key,
    ) -> octopus::BoxFuture<'a, octopus::Result<()>> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async { Err(Error::unavailable("flaky", "connection lost")) });
        }
        self.inner.invalidate(schema, key)
    }
}

/// The deep level's invalidation fails; meanwhile a reader does not take
/// the deep level's old row (its key is queued for retry there), so it
/// neither returns it nor fills it in front. Once the deep level answers,
/// the retry invalidates it and then the front level again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_deep_invalidation_clears_the_levels_in_front_again() {
    use std::sync::atomic::Ordering;
    let primary: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let deep = Arc::new(FlakyInvalidations {
        inner: MemoryStore::new(),
        down: false.into(),
    });
    let plan = Arc::new(
        Plan::builder(primary)
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .cache(deep.clone(), CachePolicy::Invalidate)
            .build()
            .unwrap(),
    );
    let dao: Dao<Ledger> = Dao::new(plan.clone());
    let mut ledger = Ledger {
        id: 1,
        total: 1,
        version: 0,
    };
    dao.create(&mut ledger).await.unwrap();
    assert_eq!(dao.read(1u64).await.unwrap(), Some(ledger.clone()));

    deep.down.store(true, Ordering::SeqCst);
    let mut newer = ledger.clone();
    newer.total = 2;
    dao.update(&mut newer).await.unwrap();
    // The front level's marker is there; the deep level still has the old
    // row, but its key is queued for retry there: the row is not served
    // (nor filled in front), the primary's is.
    assert_eq!(dao.read(1u64).await.unwrap(), Some(newer.clone()));
    assert_eq!(plan.stats().levels[1].distrusted, 1, "{:?}", plan.stats());
    deep.down.store(false, Ordering::SeqCst);
    reads_eventually(&dao, Some(newer)).await;
}
