//! The circuit breaker on virtual time: opens at the threshold, fails fast
//! while open, admits exactly its probes when half-open, closes or reopens on
//! their outcome, never stays half-open past its bound, counts slow calls,
//! and ignores bad input.

use std::sync::Arc;
use std::time::Duration;

use octopus::{BreakerOptions, BreakerState, CircuitBreaker, Dao, Error, Key, Model, Plan, Store};
use octopus_test_support::{Scripted, Step};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Model)]
struct Item {
    #[octopus(key)]
    id: u64,
}

fn config() -> BreakerOptions {
    BreakerOptions {
        window: 4,
        minimum_calls: 4,
        failure_rate: 0.5,
        slow_call_duration: Duration::from_secs(1),
        slow_call_rate: 0.5,
        open_wait: Duration::from_secs(10),
        half_open_calls: 2,
        half_open_max_wait: Duration::from_secs(5),
    }
}

fn breaker() -> Arc<CircuitBreaker> {
    CircuitBreaker::new("scripted", config()).unwrap()
}

async fn call(b: &Arc<CircuitBreaker>, store: &Scripted) -> Result<Option<octopus::Record>, Error> {
    b.call(store.get(Item::SCHEMA, &Key::UInt(1))).await
}

/// Opens the breaker: four failures in a window of four.
async fn open(b: &Arc<CircuitBreaker>, store: &Scripted) {
    store.then_n(4, || Step::Down);
    for _ in 0..4 {
        assert!(call(b, store).await.is_err());
    }
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn opens_when_the_failure_rate_reaches_the_threshold() {
    let (b, store) = (breaker(), Scripted::new());
    store
        .then(Step::Pass)
        .then(Step::Pass)
        .then(Step::Pass)
        .then(Step::Down);
    for _ in 0..4 {
        let _ = call(&b, &store).await;
    }
    assert_eq!(b.state(), BreakerState::Closed, "1 failure in 4 is 25%");
    store.then(Step::Down);
    let _ = call(&b, &store).await;
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "2 failures in the last 4 is 50%"
    );
    assert_eq!(b.snapshot().opened, 1);
}

#[tokio::test(start_paused = true)]
async fn waits_for_the_minimum_number_of_calls() {
    let (b, store) = (breaker(), Scripted::new());
    store.then_n(3, || Step::Down);
    for _ in 0..3 {
        let _ = call(&b, &store).await;
    }
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "3 calls are fewer than the minimum of 4"
    );
}

#[tokio::test(start_paused = true)]
async fn a_minimum_above_the_window_counts_as_the_window() {
    let options = BreakerOptions {
        window: 3,
        ..BreakerOptions::default()
    };
    assert_eq!(options.minimum_calls, 10, "the default minimum exceeds 3");
    let (b, store) = (
        CircuitBreaker::new("small", options).unwrap(),
        Scripted::new(),
    );
    store.then_n(3, || Step::Down);
    for _ in 0..2 {
        let _ = call(&b, &store).await;
    }
    assert_eq!(b.state(), BreakerState::Closed, "2 calls, window not full");
    let _ = call(&b, &store).await;
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "3 failures fill a window of 3: a window can never hold 10 calls"
    );
}

#[tokio::test(start_paused = true)]
async fn fails_fast_while_open_without_touching_the_store() {
    let store = Scripted::new();
    let plan = Arc::new(
        Plan::builder(store.clone())
            .breaker(config())
            .build()
            .unwrap(),
    );
    let items: Dao<Item> = Dao::new(plan.clone());
    store.then_n(4, || Step::Down);
    for _ in 0..4 {
        assert!(items.read(1u64).await.is_err());
    }
    assert_eq!(plan.read_breaker().state(), BreakerState::Open);
    let before = store.calls();
    for _ in 0..5 {
        let err = items.read(1u64).await.unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable { .. })
                && err.to_string().contains("circuit breaker is open"),
            "{err}"
        );
    }
    assert_eq!(store.calls(), before, "the store saw no read while open");
    assert_eq!(plan.stats().read_breaker.rejected, 5);
    // Writes have their own breaker: failing reads do not refuse them.
    assert_eq!(plan.breaker().state(), BreakerState::Closed);
    items.create(&mut Item { id: 9 }).await.unwrap();
    // One success and three failures in a window of four: open.
    store.then_n(3, || Step::Down);
    for id in 10..13 {
        assert!(items.create(&mut Item { id }).await.is_err());
    }
    assert_eq!(plan.breaker().state(), BreakerState::Open);
    let before = store.calls();
    for id in 20..25 {
        let err = items.create(&mut Item { id }).await.unwrap_err();
        assert!(err.is_unavailable());
    }
    assert_eq!(store.calls(), before, "the store saw no write while open");
    assert_eq!(plan.stats().breaker.rejected, 5);
}

/// A primary whose writes time out (a locked database file) while reads
/// are answered: its writes' breaker opens, reads go on.
#[tokio::test(start_paused = true)]
async fn writes_timing_out_leave_reads_served() {
    let store = Scripted::new();
    let plan = Arc::new(
        Plan::builder(store.clone())
            .breaker(config())
            .build()
            .unwrap(),
    );
    let items: Dao<Item> = Dao::new(plan.clone());
    items.create(&mut Item { id: 1 }).await.unwrap();
    store.then_n(3, || Step::Down);
    for id in 2..5 {
        assert!(items.create(&mut Item { id }).await.is_err());
    }
    assert_eq!(plan.breaker().state(), BreakerState::Open);
    for _ in 0..10 {
        assert_eq!(items.read(1u64).await.unwrap(), Some(Item { id: 1 }));
    }
    assert_eq!(plan.read_breaker().state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_configured_probes() {
    let (b, store) = (breaker(), Scripted::new());
    open(&b, &store).await;
    tokio::time::advance(Duration::from_secs(10)).await;

    let gate = Arc::new(Notify::new());
    store
        .then(Step::Gate(gate.clone()))
        .then(Step::Gate(gate.clone()));
    let before = store.calls();
    let probes: Vec<_> = (0..2)
        .map(|_| {
            let (b, store) = (b.clone(), store.clone());
            tokio::spawn(async move { call(&b, &store).await })
        })
        .collect();
    tokio::task::yield_now().await;
    while store.calls() < before + 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(b.state(), BreakerState::HalfOpen);
    // A third call while both probes are out is refused at once.
    let err = call(&b, &store).await.unwrap_err();
    assert!(err.to_string().contains("circuit breaker is open"), "{err}");
    assert_eq!(
        store.calls(),
        before + 2,
        "only the probes reached the store"
    );

    gate.notify_waiters();
    for p in probes {
        p.await.unwrap().unwrap();
    }
    assert_eq!(b.state(), BreakerState::Closed, "both probes succeeded");
}

#[tokio::test(start_paused = true)]
async fn successful_probes_close_it() {
    let (b, store) = (breaker(), Scripted::new());
    open(&b, &store).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    call(&b, &store).await.unwrap();
    assert_eq!(b.state(), BreakerState::HalfOpen, "one of two probes done");
    call(&b, &store).await.unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
    call(&b, &store).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failing_probes_reopen_it() {
    let (b, store) = (breaker(), Scripted::new());
    open(&b, &store).await;
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(
        call(&b, &store)
            .await
            .unwrap_err()
            .to_string()
            .contains("circuit breaker is open"),
        "still waiting"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    store.then(Step::Down).then(Step::Down);
    let _ = call(&b, &store).await;
    let _ = call(&b, &store).await;
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().opened, 2);
    let before = store.calls();
    assert!(call(&b, &store).await.is_err());
    assert_eq!(store.calls(), before);
}

#[tokio::test(start_paused = true)]
async fn leaves_half_open_after_the_bounded_wait() {
    let (b, store) = (breaker(), Scripted::new());
    open(&b, &store).await;
    tokio::time::advance(Duration::from_secs(10)).await;

    // Two probes that never answer.
    let gate = Arc::new(Notify::new());
    store
        .then(Step::Gate(gate.clone()))
        .then(Step::Gate(gate.clone()));
    let stuck: Vec<_> = (0..2)
        .map(|_| {
            let (b, store) = (b.clone(), store.clone());
            tokio::spawn(async move { call(&b, &store).await })
        })
        .collect();
    while store.calls() < 6 {
        tokio::task::yield_now().await;
    }
    assert_eq!(b.state(), BreakerState::HalfOpen);

    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(call(&b, &store).await.is_err());
    assert_eq!(b.state(), BreakerState::Open, "half-open gave up after 5 s");

    // The stuck probes finishing late change nothing; after the open wait,
    // fresh probes are admitted and close it.
    gate.notify_waiters();
    for p in stuck {
        let _ = p.await.unwrap();
    }
    assert_eq!(b.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(10)).await;
    call(&b, &store).await.unwrap();
    call(&b, &store).await.unwrap();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_count() {
    let (b, store) = (breaker(), Scripted::new());
    store
        .then(Step::Slow(Duration::from_secs(2)))
        .then(Step::Pass)
        .then(Step::Pass);
    for _ in 0..3 {
        call(&b, &store).await.unwrap();
    }
    assert_eq!(b.snapshot().window_slow, 1);
    store.then(Step::Slow(Duration::from_millis(1500)));
    call(&b, &store).await.unwrap();
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "2 slow calls in 4 is 50%, though all succeeded"
    );
}

#[tokio::test(start_paused = true)]
async fn rejected_input_never_trips_it() {
    let (b, store) = (breaker(), Scripted::new());
    store.then_n(20, || Step::Reject);
    for _ in 0..20 {
        let err = call(&b, &store).await.unwrap_err();
        assert!(matches!(err, Error::Rejected { .. }));
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().window_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn state_changes_reach_listeners() {
    let (b, store) = (breaker(), Scripted::new());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    b.on_state_change(move |name, from, to| log.lock().unwrap().push((name.to_owned(), from, to)));
    open(&b, &store).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    call(&b, &store).await.unwrap();
    call(&b, &store).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    use BreakerState::*;
    assert_eq!(
        seen,
        [
            ("scripted".to_owned(), Closed, Open),
            ("scripted".to_owned(), Open, HalfOpen),
            ("scripted".to_owned(), HalfOpen, Closed)
        ]
    );
}

#[test]
fn invalid_settings_name_the_setting() {
    let err = CircuitBreaker::new(
        "x",
        BreakerOptions {
            failure_rate: 1.5,
            ..config()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "breaker.failure_rate"),
        "{err:?}"
    );
    let err = CircuitBreaker::new(
        "x",
        BreakerOptions {
            minimum_calls: 0,
            ..config()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "breaker.minimum_calls"),
        "{err:?}"
    );
}
