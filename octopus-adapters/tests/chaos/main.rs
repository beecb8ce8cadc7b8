//! The chaos test: concurrent random creates, updates, deletes and reads over
//! a small key space, against MySQL (behind a fault proxy) + memcached (a
//! process this test starts and kills) + the in-process cache + the journal,
//! while a scheduler injects outages: MySQL refusing, blackholed and slow,
//! memcached killed and restarted, both at once, and an Octopus restart with
//! a non-empty journal. A reference model of acknowledged operations decides
//! what every read must return and what MySQL must hold at the end.
//!
//! The parts: `world` sets up the servers and opens the application,
//! `workers` run the operations and keep the reference, `faults` runs the
//! outage schedule, `verify` drains the journal and checks the end state.
//!
//! `OCTOPUS_CHAOS_SECS` sets the length (default 15 s; the outage cycle
//! repeats until it has passed).
#![cfg(all(feature = "mysql", feature = "memcache"))]

mod faults;
mod verify;
mod workers;
mod world;

use std::time::Duration;

use octopus::Model;

use workers::Workers;
use world::World;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "chaos_items")]
struct Item {
    #[octopus(key)]
    id: u64,
    value: u64,
    #[octopus(version)]
    version: u64,
}

const KEYS: u64 = 40;
const WORKERS: usize = 6;
/// Deadlines: MySQL calls, memcached calls.
const MYSQL_DEADLINE_MS: u64 = 500;
const MEMCACHE_TIMEOUT_MS: u64 = 150;
/// The longest a Dao call may take: a primary call, two memcached calls
/// (lookup and fill, or invalidate), plus a stated slack for the journal's
/// fsync and scheduling on a loaded 2-core machine.
const CALL_BOUND_MS: u64 = MYSQL_DEADLINE_MS + 2 * MEMCACHE_TIMEOUT_MS + 1200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos() {
    let secs: u64 = std::env::var("OCTOPUS_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut world = World::start().await;
    let app = world.open_app().await;
    let workers = Workers::spawn(&app);
    let schedule = faults::run(&mut world, &app, Duration::from_secs(secs)).await;
    let done = workers.stop().await;
    verify::end_state(&world, &app, schedule, &done).await;
}
