//! History-checked chaos: application processes, each with its own plan
//! (MySQL, the in-process cache, memcached, its own journal on a small
//! disk) and eight tasks, create, update (read-modify-write of a versioned
//! row), delete, read and read_many the same hot keys, with no lock around
//! an operation, while the test takes every server down in turn, for real
//! (see `faults`): MySQL refused and blackholed, MariaDB SIGKILLed and
//! restarted, switched read-only, memcached killed and blackholed, the
//! journals' disks full, an application process SIGKILLed and restarted
//! on its journal. Process p0's first incarnation runs under `strace`:
//! crash states of its journal are checked afterwards (see `power`).
//!
//! Every operation's invocation and completion are recorded on the system
//! clock (shared by the processes) with what the client was told; once
//! every server is back and every journal has drained, the history is
//! checked per key against the final state (`octopus_test_support::history`).
//!
//! `OCTOPUS_HISTORY_SECS` (or `OCTOPUS_CHAOS_SECS`, which makes both chaos
//! tests soaks) sets the workload's length (default 12 s: every fault
//! once), `OCTOPUS_HISTORY_PROCESSES` the number of processes
//! (default 1), `OCTOPUS_HISTORY_MEMORY=0` leaves the in-process cache out,
//! `OCTOPUS_HISTORY_LEASE_MS` sets the plans' fleet lease (default 20 ms
//! in the fleet, none otherwise; see below),
//! `OCTOPUS_HISTORY_CRASH_STATES` the number of crash states (default
//! 1000), `OCTOPUS_HISTORY_PACE_US` the least time between two operations
//! of a task (for soaks; default none).
//!
//! With several processes, each with a journal of its own, the promise
//! does not hold, and the test says so (it is ignored by default): a
//! process cannot see the pending journal entries of another, so once
//! MySQL is back it may read and write past them (a run: 1,864
//! violations). Run it with
//! `cargo test -p octopus-adapters --all-features --test history_chaos -- --ignored`.
//! `three_processes_sharing_a_stream_keep_the_history` runs three
//! processes on one shared journal instead (a JetStream stream on a
//! nats-server of the test's own), through the same faults but the full
//! disks, without a power-loss trace: 0 violations. Each process has an
//! in-process cache in front of memcached, kept current across the
//! processes by a fleet lease of 20 ms (`PlanBuilder::fleet_lease`);
//! without it (`OCTOPUS_HISTORY_LEASE_MS=0`) an in-process cache sees no
//! other process's writes, and the checker finds the stale reads that
//! causes (a run: 7 stale, 3 resurrected). A blackholed memcached keeps its
//! rows: a process whose memcached breaker is still open after memcached
//! answers again skips its invalidations, while another process already
//! reads memcached's old row (it showed as 1 stale read in 2 of 8 runs,
//! about 1 s after the blackhole healed); under a lease, such a write now
//! invalidates memcached once more before it is acknowledged
//! (`fleet_lease.rs`, `a_write_whose_breaker_skipped_…`), and a server
//! that saw memcached fail distrusts it for a while after it answers
//! again, so every queued retry lands before its rows are served
//! (`dead_cache.rs`, `another_server_does_not_trust_…`; before that, a
//! stale read still showed in 1 of 5 runs). `deaths` runs the fleet
//! through a death instead of the schedule: a process killed for good
//! mid-outage, and the drainer killed mid-drain.
#![cfg(all(feature = "mysql", feature = "memcache"))]

mod app;
#[cfg(feature = "nats")]
mod deaths;
mod faults;
mod power;
mod records;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use faults::{Fault, World};
use octopus::{Key, Model, Store};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::history::{self, Op, Outcome};
use octopus_test_support::memcache::fresh_namespace;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "history_items")]
struct Item {
    #[octopus(key)]
    id: u64,
    value: i64,
    #[octopus(version)]
    version: u64,
}

const TASKS: u64 = 8;
/// The keys, the first `HOT` of them hot.
const KEYS: u64 = 48;
const HOT: u64 = 4;
const ROLE: &str = "OCTOPUS_HISTORY_ROLE";
const URL: &str = "OCTOPUS_HISTORY_URL";
const MEMCACHE: &str = "OCTOPUS_HISTORY_MEMCACHE";
const NAMESPACE: &str = "OCTOPUS_HISTORY_NAMESPACE";
const MEMORY: &str = "OCTOPUS_HISTORY_MEMORY";
/// The plan's fleet lease in milliseconds (0: none).
const LEASE: &str = "OCTOPUS_HISTORY_LEASE_MS";
const DIR: &str = "OCTOPUS_HISTORY_DIR";
const JOURNAL: &str = "OCTOPUS_HISTORY_JOURNAL";
const UNTIL: &str = "OCTOPUS_HISTORY_UNTIL";
const NATS: &str = "OCTOPUS_HISTORY_NATS";
/// Set: each process chains its own journal behind the shared stream.
const CHAIN: &str = "OCTOPUS_HISTORY_CHAIN";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds on the system clock, which every process shares.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The keys a `read_many` of `key` reads.
fn many(key: u64) -> [u64; 3] {
    [key, (key + 1) % KEYS, (key + 5) % KEYS]
}

/// One application process (not a test of its own: without its
/// environment it returns at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_chaos_process() {
    if let Ok(role) = std::env::var(ROLE) {
        app::main(role).await;
    }
}

/// The processes overlap on hot keys through every fault: the history
/// holds, and every crash state of a journal opens with what it
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_every_fault_keeps_the_history() {
    run(
        setting("OCTOPUS_HISTORY_PROCESSES", 1) as usize,
        "history_one",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "finds the cross-process gaps the shared journal must close (see the module docs)"]
async fn three_processes_keep_the_promise() {
    run(3, "history_three", false).await;
}

/// Three processes sharing one journal on JetStream (a nats-server of the
/// test's own), hot keys shared, through the same faults (the journals'
/// disks aside, which they do not use; no power-loss trace).
///
/// Each process has an in-process cache under a fleet lease (see the
/// module docs).
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_sharing_a_stream_keep_the_history() {
    run(3, "history_fleet", true).await;
}

/// The multi-process runs go one at a time: each starts servers of its
/// own on free ports (a port one test frees could be taken by another's
/// server), and two at once would share the machine's two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Each process's directory (its history, marks, dead letters), created.
fn process_dirs(work: &Path, processes: usize) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = (0..processes).map(|n| work.join(format!("p{n}"))).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    dirs
}

/// A process's settings.
struct Spawn<'a> {
    url: &'a str,
    memcache: &'a str,
    namespace: &'a str,
    until: u64,
    /// The shared stream's URL, in fleet mode.
    nats: Option<String>,
    /// Each process's own journal chained behind the stream.
    chain: bool,
}

impl Spawn<'_> {
    fn command(&self, n: usize, dir: &Path, journal: &Path) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "history_chaos_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, format!("p{n}"))
        .env(URL, self.url)
        .env(MEMCACHE, self.memcache)
        .env(NAMESPACE, self.namespace)
        .env(MEMORY, std::env::var(MEMORY).unwrap_or_else(|_| "1".into()))
        .env(
            LEASE,
            std::env::var(LEASE)
                .unwrap_or_else(|_| if self.nats.is_some() { "20" } else { "0" }.into()),
        )
        .env(DIR, dir)
        .env(JOURNAL, journal)
        .env(UNTIL, self.until.to_string())
        .stdout(Stdio::null());
        if let Some(url) = &self.nats {
            cmd.env(NATS, url);
        }
        if self.chain {
            cmd.env(CHAIN, "1");
        }
        cmd
    }
}

/// Kills process `child` (for a traced one, the process strace runs) with
/// SIGKILL and waits for it.
fn kill(child: &mut Child) {
    let pid = child.id();
    let children = format!("/proc/{pid}/task/{pid}/children");
    let traced = std::fs::read_to_string(children).unwrap_or_default();
    for target in traced.split_whitespace().chain([pid.to_string().as_str()]) {
        let _ = Command::new("kill").args(["-9", target]).status();
    }
    child.wait().unwrap();
}

/// The workload with `processes` processes under the fault schedule, then
/// the checks.
async fn run(processes: usize, name: &str, fleet: bool) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let secs = setting("OCTOPUS_HISTORY_SECS", setting("OCTOPUS_CHAOS_SECS", 12));
    // Dead letters grow with the run: about a megabyte per second of it.
    let mut world = World::start(processes, 16.max(secs * 2)).await;
    let (url, memcache) = (world.mysql_url(), world.memcache_url());
    let mysql = MysqlStore::new(&world.mariadb.app_url("deadline_ms=5000")).unwrap();
    let initial = seed(&mysql).await;
    let work = tempfile::tempdir().unwrap();
    let nats = if fleet {
        Some(start_nats().await)
    } else {
        None
    };
    let dirs = process_dirs(work.path(), processes);
    let spawn = Spawn {
        url: &url,
        memcache: &memcache,
        namespace: &fresh_namespace(name),
        until: now() + secs * 1_000_000_000,
        nats: nats.as_ref().map(|n| format!("{}?stream=history", n.url())),
        chain: false,
    };
    let trace = work.path().join("trace");
    let mut children: Vec<Child> = (0..processes)
        .map(|n| {
            let mut cmd = spawn.command(n, &dirs[n], &world.journal(n));
            if n == 0 && !fleet {
                crash_states::traced(cmd, &trace).spawn()
            } else {
                cmd.spawn()
            }
            .expect("start an application process (the first under strace: ./scripts/services.sh installs it)")
        })
        .collect();
    let mut turn = 0;
    while now() + 2_000_000_000 < spawn.until {
        let fault = faults::SCHEDULE[turn % faults::SCHEDULE.len()];
        if fault == Fault::AppKilled {
            let victim = 0;
            kill(&mut children[victim]);
            children[victim] = spawn
                .command(victim, &dirs[victim], &world.journal(victim))
                .spawn()
                .unwrap();
        }
        let from = now();
        let healed = world.inflict(fault).await;
        // The timeline, on the history's clock, for reading a violation.
        eprintln!(
            "fault {fault:?} {from}..{healed}, then healthy until {}",
            now()
        );
        turn += 1;
    }
    world.heal().await;
    let failed: Vec<String> = children
        .iter_mut()
        .enumerate()
        .filter_map(|(n, child)| {
            let status = child.wait().unwrap();
            (!status.success()).then(|| format!("p{n}: {status}"))
        })
        .collect();
    // A process that failed (its journal never drained, say) is checked
    // all the same: its history says what it was told, and the checker
    // says what became of it.
    if !failed.is_empty() {
        eprintln!("processes failed ({failed:?}): checking the history all the same");
    }
    if fleet {
        check(&world, &mysql, &dirs, &initial, None).await;
    } else {
        let states = setting("OCTOPUS_HISTORY_CRASH_STATES", 1000) as usize;
        let power = power::check(&trace, &world.journal(0), &dirs[0].join("marks"), states).await;
        check(&world, &mysql, &dirs, &initial, Some(&power)).await;
    }
    assert!(failed.is_empty(), "processes failed: {failed:?}");
}

/// A nats-server of the test's own, kept running for the test's length.
#[cfg(feature = "nats")]
async fn start_nats() -> octopus_test_support::nats::OwnNats {
    octopus_test_support::nats::OwnNats::start().await
}

#[cfg(not(feature = "nats"))]
async fn start_nats() -> NoNats {
    panic!("the fleet mode needs the `nats` feature")
}

/// What stands for a nats-server without the `nats` feature.
#[cfg(not(feature = "nats"))]
struct NoNats;

#[cfg(not(feature = "nats"))]
impl NoNats {
    fn url(&self) -> String {
        unreachable!()
    }
}

/// Every key at value 0, version 1.
async fn seed(mysql: &MysqlStore) -> BTreeMap<u64, Option<i64>> {
    mysql.ensure_schema(Item::SCHEMA).await.unwrap();
    let mut initial = BTreeMap::new();
    for id in 0..KEYS {
        let item = Item {
            id,
            value: 0,
            version: 1,
        };
        mysql
            .upsert(Item::SCHEMA, &item.to_record().unwrap())
            .await
            .unwrap();
        initial.insert(id, Some(0));
    }
    initial
}

/// The history against MySQL's final state, and the crash states.
async fn check(
    world: &World, mysql: &MysqlStore, dirs: &[PathBuf], initial: &BTreeMap<u64, Option<i64>>,
    power: Option<&power::Summary>,
) {
    let (mut ops, mut letters) = (Vec::new(), 0);
    let read_dead = |dir: &Path| {
        let text = std::fs::read_to_string(dir.join("dead")).ok()?;
        Some(records::dead_letters(&text))
    };
    // A shared stream's dead letters are the fleet's: every process that
    // ran to the end lists them all (one killed for good lists none).
    // With local journals chained behind the stream, each process adds
    // its own: the fleet's are the union.
    let fleet_dead = if power.is_none() {
        let all: Vec<records::DeadLetters> = dirs.iter().filter_map(|d| read_dead(d)).collect();
        assert!(
            !all.is_empty(),
            "no process of the fleet wrote the dead letters"
        );
        let dead: records::DeadLetters = all.into_iter().flatten().collect();
        letters = dead.len();
        Some(dead)
    } else {
        None
    };
    for (n, dir) in dirs.iter().enumerate() {
        let dead = match &fleet_dead {
            Some(dead) => dead.clone(),
            // None from a process that failed before writing them.
            None => read_dead(dir).unwrap_or_default(),
        };
        if power.is_some() {
            letters += dead.len();
        }
        let text = std::fs::read_to_string(dir.join("history")).unwrap();
        ops.extend(records::parse(&format!("p{n}"), &text, &dead));
    }
    let mut last = BTreeMap::new();
    for id in 0..KEYS {
        let row = mysql.get(Item::SCHEMA, &Key::UInt(id)).await.unwrap();
        last.insert(id, row.map(|r| Item::from_record(r).unwrap().value));
    }
    let violations = history::check(&ops, initial, &last);
    let acked = ops
        .iter()
        .filter(|o| {
            o.outcome == Outcome::Ok && matches!(o.op, Op::Put(_) | Op::Created(_) | Op::Delete)
        })
        .count();
    let count = |rule| violations.iter().filter(|v| v.rule == rule).count();
    println!(
        "history: processes={} journal={} ops={} acked={acked} outages={} ({}) lost={} stale={} resurrected={} false_conflicts={} missed_conflicts={} phantom={} future={} dead_letters={letters} {}",
        dirs.len(),
        if power.is_some() {
            "files"
        } else {
            "jetstream"
        },
        ops.len(),
        world.outages(),
        world.by_kind(),
        count("lost"),
        count("stale"),
        count("resurrected"),
        count("false_conflict"),
        count("missed_conflict"),
        count("phantom"),
        count("future"),
        power.map_or(
            "(no power-loss trace: a shared stream)".to_owned(),
            |p| format!(
                "crash_states={} (refused={} lost={}, {} journaled acks traced)",
                p.states,
                p.refused.len(),
                p.lost.len(),
                p.marks
            )
        ),
    );
    assert!(
        violations.is_empty(),
        "{} violations; the first two of each rule:\n{}",
        violations.len(),
        violations
            .iter()
            .filter(|v| {
                let before = violations.iter().take_while(|w| !std::ptr::eq(*w, *v));
                before.filter(|w| w.rule == v.rule).count() < 2
            })
            .map(|v| format!("key {} {}: {}", v.key, v.rule, v.detail))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let Some(power) = power else {
        return;
    };
    assert!(
        power.refused.is_empty() && power.lost.is_empty(),
        "crash states: {:?} {:?}",
        &power.refused[..power.refused.len().min(3)],
        &power.lost[..power.lost.len().min(3)]
    );
    assert!(
        power.marks > 0,
        "the traced process acknowledged no journaled put"
    );
}
