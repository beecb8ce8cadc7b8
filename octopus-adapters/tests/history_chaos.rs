//! History-checked chaos across processes: application processes, each
//! with its own plan (MySQL through the fault proxy, the in-process cache,
//! the shared memcached, its own journal) and eight tasks, create, update
//! (read-modify-write of a versioned row), delete, read and read_many the
//! same hot keys while the test takes MySQL down and up again and SIGKILLs
//! one process and restarts it on its journal. No task holds a lock around
//! an operation: operations on one key overlap within and across
//! processes.
//!
//! Every operation's invocation and completion are recorded with the
//! system clock (shared by the processes) and what the client was told;
//! once MySQL is back and every journal has drained, the history is
//! checked against MySQL's final state by `support::history` (stale,
//! phantom and future reads; lost writes). Writes replay refused (dead
//! letters) count as "may or may not have happened".
//!
//! `OCTOPUS_HISTORY_SECS` sets the workload's length (default 8 s).
//!
//! With one process it runs in the suite. With three it is ignored by
//! default: today it finds what separate journals and
//! in-process caches cannot give across processes. A process answers its
//! own pending entries while another process, with none pending for the
//! key, writes a newer version straight to MySQL once it is back (the
//! pending entry is then refused at replay, but was read meanwhile); and
//! one process's in-process cache keeps a row another process changed.
//! Closing them needs a journal shared by the processes and invalidations
//! they all see (the shared-journal issue). Run it with
//! `cargo test -p octopus-adapters --all-features --test history_chaos -- --ignored`.
#![cfg(all(feature = "mysql", feature = "memcache"))]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fault_proxy::{FaultProxy, Mode};
use octopus::journal::{Journal, JournalOptions};
use octopus::{
    BreakerConfig, CachePolicy, Dao, Deletion, Error, Key, MemoryStore, Model, Plan, Store,
};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::mysql::MysqlStore;
use support::history::{self, Op, Outcome};

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
const KEYS: u64 = 12;
const ROLE: &str = "OCTOPUS_HISTORY_ROLE";
const URL: &str = "OCTOPUS_HISTORY_URL";
const NAMESPACE: &str = "OCTOPUS_HISTORY_NAMESPACE";
const DIR: &str = "OCTOPUS_HISTORY_DIR";
const UNTIL: &str = "OCTOPUS_HISTORY_UNTIL";

/// Nanoseconds on the system clock, which every process shares.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn plan(url: &str, namespace: &str, journal: Journal) -> Arc<Plan> {
    let options = MemcacheOptions::from_url(&support::memcache_url())
        .unwrap()
        .namespace(namespace)
        .unwrap();
    let remote = MemcacheStore::with_options(options).await.unwrap();
    let quick = BreakerConfig {
        open_wait: Duration::from_millis(300),
        ..BreakerConfig::default()
    };
    Arc::new(
        Plan::builder(Arc::new(MysqlStore::new(url).unwrap()))
            .breaker(quick)
            .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
            .cache(Arc::new(remote), CachePolicy::Invalidate)
            .journal(journal)
            .build()
            .unwrap(),
    )
}

/// One application process (not a test of its own: without its
/// environment it returns at once). Runs the workload until `UNTIL`, then
/// waits for its journal to drain and writes its dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_chaos_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let env = |name| std::env::var(name).unwrap();
    let dir = PathBuf::from(env(DIR));
    let until: u64 = env(UNTIL).parse().unwrap();
    let journal = Journal::open(dir.join("journal"), JournalOptions::default()).unwrap();
    let plan = plan(&env(URL), &env(NAMESPACE), journal.clone()).await;
    let items: Dao<Item> = Dao::open(plan.clone()).await.unwrap();
    let log = Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("history"))
            .unwrap(),
    ));
    let incarnation = now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (items, log, role) = (items.clone(), log.clone(), role.clone());
            tokio::spawn(async move {
                let mut rng = Rng((incarnation ^ (task + 1).wrapping_mul(0x9e37_79b9)) | 1);
                let mut n = 0u64;
                while now() < until {
                    n += 1;
                    let id = format!("{role}-{incarnation}-{task}-{n}");
                    let value =
                        (incarnation % 1_000_000) as i64 * 1_000_000 + (task * 100_000 + n) as i64;
                    one_operation(&items, &log, &id, &mut rng, value).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // The parent heals MySQL at `until`: drain, then report refusals.
    if tokio::time::timeout(Duration::from_secs(60), plan.drained())
        .await
        .is_err()
    {
        panic!("{role}: the journal did not drain: {:?}", plan.stats());
    }
    let mut letters = String::new();
    for l in journal.dead_letters().unwrap() {
        let value = l
            .entry
            .op
            .record()
            .and_then(|r| r.get("value"))
            .and_then(|v| v.as_i64());
        letters.push_str(&format!("{} {:?}\n", l.entry.key, value));
    }
    std::fs::write(dir.join("dead"), letters).unwrap();
    plan.close().await.unwrap();
}

/// Appends one line to the history file.
fn record(log: &std::sync::Mutex<std::fs::File>, line: String) {
    let mut file = log.lock().unwrap();
    file.write_all(line.as_bytes()).unwrap();
}

/// A random operation on a random key: `I id key op value time` before it,
/// `C id outcome read time` after it.
async fn one_operation(
    items: &Dao<Item>,
    log: &std::sync::Mutex<std::fs::File>,
    id: &str,
    rng: &mut Rng,
    value: i64,
) {
    let key = rng.below(KEYS);
    let pick = rng.below(100);
    let (op, arg) = match pick {
        0..45 => ("read", 0),
        45..50 => ("read_many", 0),
        50..75 => ("update", value),
        75..88 => ("create", value),
        _ => ("delete", 0),
    };
    record(log, format!("I {id} {key} {op} {arg} {}\n", now()));
    let (outcome, read): (&str, String) = match op {
        "read" => match items.read(key).await {
            Ok(r) => ("ok", format!("{:?}", r.map(|i| i.value))),
            Err(_) => ("unknown", String::new()),
        },
        "read_many" => {
            let keys = [key, (key + 1) % KEYS, (key + 5) % KEYS];
            match items.read_many(keys).await {
                Ok(rows) => (
                    "ok",
                    rows.iter()
                        .map(|r| format!("{:?}", r.as_ref().map(|i| i.value)))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                Err(_) => ("unknown", String::new()),
            }
        }
        // Read-modify-write: a stale version is a conflict.
        "update" => match items.read(key).await {
            Ok(Some(mut item)) => {
                item.value = value;
                written(items.update(&mut item).await.map(|_| ()))
            }
            Ok(None) => ("refused", String::new()),
            Err(e) => written(Err(e)),
        },
        "create" => written(
            items
                .create(&mut Item {
                    id: key,
                    value,
                    version: 0,
                })
                .await
                .map(|_| ()),
        ),
        _ => match items.delete(key).await {
            Ok(Deletion::NotFound) => ("refused", String::new()),
            Ok(_) => ("ok", String::new()),
            Err(e) => written(Err(e)),
        },
    };
    record(log, format!("C {id} {outcome} {read} {}\n", now()));
}

fn written(out: Result<(), Error>) -> (&'static str, String) {
    match out {
        Ok(()) => ("ok", String::new()),
        Err(Error::Conflict { .. } | Error::NotFound { .. } | Error::AlreadyExists { .. }) => {
            ("refused", String::new())
        }
        Err(_) => ("unknown", String::new()),
    }
}

fn spawn(n: usize, url: &str, namespace: &str, dir: &Path, until: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "history_chaos_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, format!("p{n}"))
        .env(URL, url)
        .env(NAMESPACE, namespace)
        .env(DIR, dir)
        .env(UNTIL, until.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// One process, eight tasks overlapping on the hot keys, MySQL down and
/// up, the process SIGKILLed and restarted on its journal: the history
/// holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_with_overlapping_tasks_keeps_the_promise() {
    run(1, "history_one").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "finds the cross-process gaps the shared journal must close (see the module docs)"]
async fn three_processes_overlap_on_hot_keys_and_keep_the_promise() {
    run(3, "history_three").await;
}

/// The workload with `processes` processes (the last one is SIGKILLed and
/// restarted halfway), then the check.
async fn run(processes: usize, name: &str) {
    let secs: u64 = std::env::var("OCTOPUS_HISTORY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let url = support::fresh_database(name).await;
    let namespace = support::fresh_namespace(name);
    let opts = mysql_async::Opts::from_url(&url).unwrap();
    let upstream = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
        .parse()
        .unwrap();
    let db = url.rsplit_once('/').unwrap().1.to_owned();
    let proxy = FaultProxy::start(upstream).await.unwrap();
    // Seed: every key exists at value 0.
    let mysql = MysqlStore::new(&url).unwrap();
    mysql.ensure_schema(Item::SCHEMA).await.unwrap();
    let mut initial = BTreeMap::new();
    for id in 0..KEYS {
        mysql
            .upsert(
                Item::SCHEMA,
                &Item {
                    id,
                    value: 0,
                    version: 1,
                }
                .to_record()
                .unwrap(),
            )
            .await
            .unwrap();
        initial.insert(id, Some(0));
    }

    let work = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..processes)
        .map(|n| work.path().join(format!("p{n}")))
        .collect();
    let shared_url = format!("mysql://root@{}/{db}?deadline_ms=400", proxy.addr());
    let urls: Vec<String> = (0..processes).map(|_| shared_url.clone()).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let until = now() + secs * 1_000_000_000;
    let mut children: Vec<Child> = (0..processes)
        .map(|n| spawn(n, &urls[n], &namespace, &dirs[n], until))
        .collect();

    // The fault schedule: MySQL down for every process (connections reset,
    // then refused or blackholed) and back, over and over, and process 1
    // SIGKILLed and restarted on its journal halfway.
    let mut outages = 0;
    let mut killed = false;
    let start = std::time::Instant::now();
    let mut turn = 0usize;
    while now() + 1_500_000_000 < until {
        let mode = if turn.is_multiple_of(2) {
            Mode::Refuse
        } else {
            Mode::Blackhole
        };
        proxy.set(Mode::Reset).await;
        proxy.set(mode).await;
        outages += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.set(Mode::Pass).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !killed && start.elapsed() >= Duration::from_secs(secs / 2) {
            let victim = processes - 1;
            children[victim].kill().unwrap();
            children[victim].wait().unwrap();
            children[victim] = spawn(victim, &urls[victim], &namespace, &dirs[victim], until);
            killed = true;
        }
        turn += 1;
    }
    proxy.set(Mode::Pass).await;
    for (n, child) in children.iter_mut().enumerate() {
        let status = child.wait().unwrap();
        assert!(status.success(), "process p{n} failed: {status}");
    }

    // The history, the refused entries, and MySQL's final state.
    let mut ops = Vec::new();
    let mut letters = 0;
    for (n, dir) in dirs.iter().enumerate() {
        let dead = std::fs::read_to_string(dir.join("dead")).unwrap_or_default();
        let dead: HashSet<(u64, Option<i64>)> = dead
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                let v = v
                    .trim()
                    .strip_prefix("Some(")
                    .and_then(|v| v.strip_suffix(')'));
                Some((k.parse().ok()?, v.and_then(|v| v.parse().ok())))
            })
            .collect();
        letters += dead.len();
        let text = std::fs::read_to_string(dir.join("history")).unwrap();
        ops.extend(parse(&format!("p{n}"), &text, &dead));
    }
    let mut last = BTreeMap::new();
    for id in 0..KEYS {
        let row = mysql.get(Item::SCHEMA, &Key::UInt(id)).await.unwrap();
        last.insert(id, row.map(|r| Item::from_record(r).unwrap().value));
    }
    let violations = history::check(&ops, &initial, &last);
    let acked = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok && !matches!(o.op, Op::Read(_)))
        .count();
    let count = |rule| violations.iter().filter(|v| v.rule == rule).count();
    println!(
        "history: processes={processes} ops={} acked={acked} outages={outages} (MySQL down; 1 kill) lost={} stale={} phantom={} future={} dead_letters={letters}",
        ops.len(),
        count("lost"),
        count("stale"),
        count("phantom"),
        count("future"),
    );
    assert!(
        violations.is_empty(),
        "{} violations; the first:\n{}",
        violations.len(),
        violations
            .iter()
            .take(5)
            .map(|v| format!("key {} {}: {}", v.key, v.rule, v.detail))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The records of one process's history file. Writes whose (key, value)
/// replay refused, and deletes of a key a refused delete names, may or may
/// not have happened.
fn parse(client: &str, text: &str, dead: &HashSet<(u64, Option<i64>)>) -> Vec<history::Record> {
    let mut invoked: HashMap<String, (u64, String, i64, u64)> = HashMap::new();
    let mut done: HashMap<String, (String, String, u64)> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.first() {
            Some(&"I") if f.len() == 6 => {
                invoked.insert(
                    f[1].to_owned(),
                    (
                        f[2].parse().unwrap(),
                        f[3].to_owned(),
                        f[4].parse().unwrap(),
                        f[5].parse().unwrap(),
                    ),
                );
            }
            Some(&"C") if f.len() == 5 => {
                done.insert(
                    f[1].to_owned(),
                    (f[2].to_owned(), f[3].to_owned(), f[4].parse().unwrap()),
                );
            }
            // A line cut by a SIGKILL.
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (id, (key, op, value, at)) in invoked {
        let (outcome, read, completed) = match done.get(&id) {
            Some((o, r, t)) => (o.as_str(), r.as_str(), *t),
            // Killed before it completed.
            None => ("unknown", "", u64::MAX),
        };
        let mut outcome = match outcome {
            "ok" => Outcome::Ok,
            "refused" => Outcome::Refused,
            _ => Outcome::Unknown,
        };
        let keys = |k: u64| [k, (k + 1) % KEYS, (k + 5) % KEYS];
        let reads: Vec<(u64, Option<i64>)> = match op.as_str() {
            "read" => vec![(key, read_value(read))],
            "read_many" => keys(key)
                .into_iter()
                .zip(read.split(',').map(read_value))
                .collect(),
            _ => Vec::new(),
        };
        if op == "read" || op == "read_many" {
            if outcome == Outcome::Ok {
                for (k, v) in reads {
                    out.push(history::Record {
                        client: format!("{client} {id}"),
                        key: k,
                        op: Op::Read(v),
                        outcome,
                        invoked: at,
                        completed,
                    });
                }
            }
            continue;
        }
        let written = if op == "delete" { None } else { Some(value) };
        if outcome == Outcome::Ok && dead.contains(&(key, written)) {
            outcome = Outcome::Unknown;
        }
        out.push(history::Record {
            client: format!("{client} {id}"),
            key,
            op: written.map_or(Op::Delete, Op::Put),
            outcome,
            invoked: at,
            completed,
        });
    }
    out
}

fn read_value(text: &str) -> Option<i64> {
    text.strip_prefix("Some(")
        .and_then(|v| v.strip_suffix(')'))
        .map(|v| v.parse().unwrap())
}

/// A small seeded random source (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
