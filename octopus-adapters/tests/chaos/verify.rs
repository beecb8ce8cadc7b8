//! Verification, once every server is back and the workers have stopped:
//! the journal drains, MySQL holds the reference's state of every key, and
//! the workers saw no stale read, unserved read, unexpected error or slow
//! call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use octopus_test_support::until_drained;
use tokio::sync::RwLock;

use crate::faults::Schedule;
use crate::workers::Done;
use crate::world::{App, World};
use crate::{CALL_BOUND_MS, KEYS};

/// Keys whose MySQL row is not the reference's.
#[derive(Default)]
struct Mismatches {
    /// Acknowledged writes MySQL does not hold.
    lost: u64,
    /// Rows MySQL holds although their delete was acknowledged.
    resurrected: u64,
}

/// Drains the journal, compares MySQL with the reference, prints the
/// run's numbers and asserts on them.
pub async fn end_state(world: &World, app: &RwLock<App>, schedule: Schedule, done: &Done) {
    let replayed = schedule.replayed + drain(app, schedule.started).await;
    let mismatches = compare(&world.direct_url, done).await;
    let c = &done.counters;
    let get = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
    let Mismatches { lost, resurrected } = mismatches;
    println!(
        "chaos: ops={} outages={} journaled={} replayed={replayed} lost={lost} stale_reads={} max_call_ms={}",
        get(&c.ops),
        schedule.outages,
        get(&c.journaled),
        get(&c.stale_reads),
        get(&c.max_call_ms),
    );
    println!(
        "chaos: resurrected={resurrected} unavailable_reads={} unserved_reads={} unexpected_errors={} calls_over_{CALL_BOUND_MS}ms={}",
        get(&c.unavailable_reads),
        get(&c.unserved_reads),
        get(&c.unexpected),
        get(&c.slow_calls),
    );
    assert_eq!(lost, 0, "acknowledged writes lost");
    assert_eq!(resurrected, 0, "deleted rows came back");
    let stale = "reads returned a value other than the last acknowledged one";
    assert_eq!(get(&c.stale_reads), 0, "{stale}");
    assert_eq!(get(&c.unserved_reads), 0, "reads of pending writes failed");
    assert_eq!(get(&c.unexpected), 0, "errors of an unexpected kind");
    let slow = "calls ran past their deadline plus slack";
    assert_eq!(get(&c.slow_calls), 0, "{slow}");
    assert!(
        get(&c.journaled) > 0 && replayed > 0,
        "the outages were felt"
    );
}

/// Waits for the journal to drain; the entries the plan replayed.
async fn drain(app: &RwLock<App>, schedule_started: Instant) -> u64 {
    let plan = app.read().await.plan.clone();
    let drain_started = Instant::now();
    let pending_at_end = plan.stats().fallback.unwrap().pending;
    until_drained(&plan, Duration::from_secs(60)).await;
    println!(
        "chaos: schedule took {} ms; final drain of {pending_at_end} entries took {} ms",
        (drain_started - schedule_started).as_millis(),
        drain_started.elapsed().as_millis()
    );
    plan.stats().fallback.unwrap().replayed
}

/// Compares every key's row in MySQL with the reference.
async fn compare(direct_url: &str, done: &Done) -> Mismatches {
    let mut conn = mysql_async::Conn::from_url(direct_url).await.unwrap();
    let rows: Vec<(u64, u64, u64)> = conn
        .query("SELECT id, value, version FROM chaos_items")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let stored: BTreeMap<u64, (u64, u64)> = rows
        .into_iter()
        .map(|(id, value, version)| (id, (value, version)))
        .collect();
    let mut mismatches = Mismatches::default();
    for id in 0..KEYS {
        let slot = done.reference[id as usize].lock().await;
        let want = slot.item.as_ref().map(|i| (i.value, i.version));
        let have = stored.get(&id).copied();
        if want != have {
            eprintln!("key {id}: acknowledged {want:?}, MySQL holds {have:?}");
            if want.is_none() {
                mismatches.resurrected += 1;
            } else {
                mismatches.lost += 1;
            }
        }
    }
    mismatches
}
