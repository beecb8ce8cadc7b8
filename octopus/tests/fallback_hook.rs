//! A write the primary cannot take goes to the fallback; an acknowledged
//! one is set in the caches so reads see it, and the caller learns which way
//! the write went. The default fallback fails the write.

use std::sync::{Arc, Mutex};

use octopus::{
    BoxFuture, CachePolicy, Dao, Deletion, Error, Fallback, MemoryStore, Model, Plan, Result,
    Schema, Write, WriteOutcome,
};
use octopus_test_support::{Scripted, Step};

#[derive(Debug, Clone, PartialEq, Model)]
struct Order {
    #[octopus(key)]
    id: u64,
    total: i64,
}

#[derive(Default)]
struct Recorder {
    writes: Mutex<Vec<Write>>,
}

impl Fallback for Recorder {
    fn write<'a>(
        &'a self, _: &'static Schema, write: &'a Write, _cached: Option<&'a octopus::Record>,
        error: Error,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        assert!(error.is_unavailable());
        self.writes.lock().unwrap().push(write.clone());
        Box::pin(async { Ok(WriteOutcome::Journaled) })
    }
}

#[tokio::test]
async fn unavailable_writes_go_to_the_fallback_and_are_readable() {
    let primary = Scripted::new();
    let recorder = Arc::new(Recorder::default());
    let plan = Plan::builder(primary.clone())
        .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
        .fallback(recorder.clone())
        .build()
        .unwrap();
    let orders: Dao<Order> = Dao::new(Arc::new(plan));

    primary.then(Step::Down);
    let outcome = orders
        .create(&mut Order { id: 1, total: 10 })
        .await
        .unwrap();
    assert_eq!(outcome, WriteOutcome::Journaled);
    // The primary is still down, but the cache was set: the read is served.
    primary.then(Step::Down);
    assert_eq!(
        orders.read(1u64).await.unwrap(),
        Some(Order { id: 1, total: 10 })
    );

    primary.then(Step::Down);
    assert_eq!(orders.delete(1u64).await.unwrap(), Deletion::Journaled);
    assert_eq!(recorder.writes.lock().unwrap().len(), 2);
    assert!(matches!(
        recorder.writes.lock().unwrap()[1],
        Write::Delete { .. }
    ));
}

#[tokio::test]
async fn by_default_an_unavailable_primary_fails_the_write() {
    let primary = Scripted::new();
    let orders: Dao<Order> = Dao::new(Arc::new(Plan::from_arc(primary.clone())));
    primary.then(Step::Down);
    let err = orders
        .create(&mut Order { id: 2, total: 1 })
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(
        orders.create(&mut Order { id: 2, total: 1 }).await.unwrap(),
        WriteOutcome::Primary
    );
}

#[tokio::test]
async fn rejected_writes_never_reach_the_fallback() {
    let primary = Scripted::new();
    let recorder = Arc::new(Recorder::default());
    let plan = Plan::builder(primary.clone())
        .fallback(recorder.clone())
        .build()
        .unwrap();
    let orders: Dao<Order> = Dao::new(Arc::new(plan));
    orders.create(&mut Order { id: 3, total: 1 }).await.unwrap();
    let err = orders
        .create(&mut Order { id: 3, total: 2 })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }));
    assert!(recorder.writes.lock().unwrap().is_empty());
}

/// A fallback of the application's own (an in-memory queue standing in for
/// a shared log): pending rows by key, nothing applied yet.
#[derive(Default)]
struct Queue {
    rows: Mutex<std::collections::HashMap<String, Option<octopus::Record>>>,
}

impl Fallback for Queue {
    fn write<'a>(
        &'a self, schema: &'static Schema, write: &'a Write, _cached: Option<&'a octopus::Record>,
        _error: Error,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        let (key, row) = match write {
            Write::Delete { key, .. } => (key.clone(), None),
            other => {
                let row = other.record().unwrap().clone();
                (octopus::key_of(schema, &row).unwrap(), Some(row))
            }
        };
        self.rows.lock().unwrap().insert(key.to_string(), row);
        Box::pin(async { Ok(WriteOutcome::Journaled) })
    }

    fn has_pending(&self) -> bool {
        !self.rows.lock().unwrap().is_empty()
    }

    fn must_queue<'a>(&'a self, _: &'static Schema, key: &'a octopus::Key) -> BoxFuture<'a, bool> {
        let queued = self.rows.lock().unwrap().contains_key(&key.to_string());
        Box::pin(async move { queued })
    }

    fn pending<'a>(
        &'a self, _: &'static Schema, key: &'a octopus::Key,
    ) -> BoxFuture<'a, Result<Option<Option<octopus::Record>>>> {
        let found = self.rows.lock().unwrap().get(&key.to_string()).cloned();
        Box::pin(async move { Ok(found) })
    }
}

#[tokio::test]
async fn a_custom_fallback_gets_read_your_writes_and_ordering_without_touching_the_plan() {
    let primary = Scripted::new();
    let queue = Arc::new(Queue::default());
    // No cache: reads can only see the write through the fallback.
    let plan = Plan::builder(primary.clone())
        .fallback(queue.clone())
        .build()
        .unwrap();
    let orders: Dao<Order> = Dao::new(Arc::new(plan));
    primary.set_down(true);
    orders
        .create(&mut Order { id: 1, total: 10 })
        .await
        .unwrap();
    assert_eq!(
        orders.read(1u64).await.unwrap(),
        Some(Order { id: 1, total: 10 }),
        "the plan asked the fallback for the pending row"
    );
    // The primary is back, but key 1 has a pending write: its next write
    // queues behind it instead of overtaking it.
    primary.set_down(false);
    let outcome = orders
        .update(&mut Order { id: 1, total: 20 })
        .await
        .unwrap();
    assert_eq!(outcome, WriteOutcome::Journaled);
    assert_eq!(
        orders.create(&mut Order { id: 2, total: 5 }).await.unwrap(),
        WriteOutcome::Primary,
        "other keys go to the primary"
    );
    assert_eq!(orders.read(1u64).await.unwrap().unwrap().total, 20);
}
