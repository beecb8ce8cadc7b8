//! The fault schedule: a cycle of outages, each after a healthy while and
//! lasting a while, repeated until the test's length has passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_proxy::Mode;
use octopus_test_support::{check, eventually};
use tokio::sync::RwLock;

use crate::world::{App, World};

/// How long everything is healthy before each outage.
const HEALTHY: Duration = Duration::from_millis(1000);
/// How long each outage lasts.
const DOWN: Duration = Duration::from_millis(2000);
/// How long MySQL is down before the restart outage restarts Octopus.
const DOWN_BEFORE_RESTART: Duration = Duration::from_millis(1000);
/// The added latency of a slow MySQL.
const SLOW: Duration = Duration::from_millis(120);

#[derive(Debug, Clone, Copy)]
enum Outage {
    MysqlRefuse,
    MysqlBlackhole,
    MysqlSlow,
    MemcachedKilled,
    Both,
    OctopusRestart,
}

/// One cycle.
const CYCLE: [Outage; 6] = [
    Outage::MysqlRefuse,
    Outage::MemcachedKilled,
    Outage::MysqlBlackhole,
    Outage::OctopusRestart,
    Outage::MysqlSlow,
    Outage::Both,
];

/// What the schedule did.
pub struct Schedule {
    pub started: Instant,
    pub outages: u64,
    /// Entries replayed by the plans the restarts closed.
    pub replayed: u64,
}

/// Runs whole cycles until `length` has passed (one at least); every
/// server is healthy again at the end.
pub async fn run(world: &mut World, app: &Arc<RwLock<App>>, length: Duration) -> Schedule {
    let mut schedule = Schedule {
        started: Instant::now(),
        outages: 0,
        replayed: 0,
    };
    let mut cycle = 0;
    while cycle == 0 || schedule.started.elapsed() < length {
        for outage in CYCLE {
            tokio::time::sleep(HEALTHY).await;
            schedule.outages += 1;
            schedule.replayed += inflict(world, app, outage).await;
            tokio::time::sleep(DOWN).await;
            heal(world).await;
        }
        cycle += 1;
    }
    schedule
}

/// Starts `outage`; the entries the plan a restart closed had replayed.
async fn inflict(world: &mut World, app: &RwLock<App>, outage: Outage) -> u64 {
    match outage {
        Outage::MysqlRefuse => refuse_mysql(world).await,
        Outage::MysqlBlackhole => world.proxy.set(Mode::Blackhole).await,
        Outage::MysqlSlow => world.proxy.set(Mode::Latency(SLOW)).await,
        Outage::MemcachedKilled => world.memcached.stop(),
        Outage::Both => {
            refuse_mysql(world).await;
            world.memcached.stop();
        }
        Outage::OctopusRestart => return restart_octopus(world, app).await,
    }
    0
}

async fn refuse_mysql(world: &World) {
    world.proxy.set(Mode::Reset).await;
    world.proxy.set(Mode::Refuse).await;
}

/// MySQL answers again, and memcached runs again (empty) if it was killed.
async fn heal(world: &mut World) {
    world.proxy.set(Mode::Pass).await;
    if !world.memcached.is_running() {
        world.memcached.restart().await;
    }
}

/// Takes MySQL away until the journal holds entries, then restarts Octopus
/// on it: closes the plan, reopens everything, and checks that no pending
/// entry was lost. Returns what the closed plan had replayed.
async fn restart_octopus(world: &World, app: &RwLock<App>) -> u64 {
    refuse_mysql(world).await;
    tokio::time::sleep(DOWN_BEFORE_RESTART).await;
    // Nothing drains while MySQL refuses: what is pending now stays.
    let what = "writes to be journaled while MySQL refuses";
    eventually(what, Duration::from_secs(10), async || {
        let pending = app.read().await.plan.stats().fallback.unwrap().pending;
        check(pending > 0, pending)
    })
    .await;
    let mut guard = app.write().await;
    let before = guard.plan.stats().fallback.unwrap();
    let old = std::mem::replace(&mut *guard, App::placeholder());
    old.plan.close().await.unwrap();
    drop(old);
    let plan = world.plan().await;
    assert_eq!(
        plan.stats().fallback.unwrap().pending,
        before.pending,
        "the restart kept every pending entry"
    );
    *guard = App::open(plan).await;
    before.replayed
}
