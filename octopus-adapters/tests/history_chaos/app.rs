//! One application process of the history chaos test: its own plan (MySQL
//! through the fault proxy, optionally the in-process cache, memcached
//! through its proxy, its own journal) and eight tasks running random
//! operations on the hot keys until `UNTIL`, recording each.
//!
//! The history file is written with `write_vectored`, so the power-loss
//! trace (which leaves `writev` out) holds only the journal's files and
//! the marks file: one `<key> <value>` line per acknowledged journaled
//! put.

use std::io::{IoSlice, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use octopus::journal::DeadLetter;
use octopus::journal::{Journal, JournalOptions};
use octopus::{
    BreakerOptions, CachePolicy, Dao, Deletion, Error, Fallback, FallbackChain, MemoryStore, Plan,
    WriteOutcome,
};
use octopus_adapters::memcache::{MemcacheClaims, MemcacheOptions, MemcacheStore};
use octopus_adapters::mysql::MysqlStore;
#[cfg(feature = "nats")]
use octopus_adapters::nats::JetStreamJournal;
use octopus_test_support::Rng;

use super::{HOT, Item, KEYS, TASKS, env, now};

/// Where an application process writes what it did.
pub struct Files {
    history: Mutex<std::fs::File>,
    marks: Mutex<std::fs::File>,
}

impl Files {
    fn open(dir: &std::path::Path) -> Self {
        let append = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .unwrap()
        };
        Files {
            history: Mutex::new(append("history")),
            marks: Mutex::new(append("marks")),
        }
    }

    /// One history line, in one `writev`.
    fn record(&self, line: &str) {
        let mut file = self.history.lock().unwrap();
        let n = file
            .write_vectored(&[IoSlice::new(line.as_bytes())])
            .unwrap();
        assert_eq!(n, line.len(), "a short write to the history file");
    }

    /// A journaled put acknowledged.
    fn mark(&self, key: u64, value: i64) {
        let line = format!("{key} {value}\n");
        self.marks
            .lock()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
    }
}

/// The shared memcached, through its fault proxy, in this run's namespace.
async fn memcached() -> MemcacheStore {
    let options = MemcacheOptions::from_url(&env(super::MEMCACHE))
        .unwrap()
        .namespace(&env(super::NAMESPACE))
        .unwrap();
    MemcacheStore::with_options(options).await.unwrap()
}

async fn plan(journal: Arc<dyn Fallback>) -> Arc<Plan> {
    let remote = memcached().await;
    let quick = BreakerOptions {
        open_wait: Duration::from_millis(300),
        ..BreakerOptions::default()
    };
    let mut plan =
        Plan::builder(Arc::new(MysqlStore::new(&env(super::URL)).unwrap())).breaker(quick);
    let lease: u64 = env(super::LEASE).parse().unwrap();
    if lease > 0 {
        plan = plan.fleet_lease(Duration::from_millis(lease));
    }
    if env(super::MEMORY) == "1" {
        plan = plan.cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate);
    }
    Arc::new(
        plan.cache(Arc::new(remote), CachePolicy::Invalidate)
            .fallback(journal)
            .build()
            .unwrap(),
    )
}

/// The process: runs the workload until `UNTIL`, then (the parent has
/// healed every server) waits for its journal to drain and writes its
/// dead letters, one `<key> <value or ->` line each.
pub async fn main(role: String) {
    let dir = PathBuf::from(env(super::DIR));
    let until: u64 = env(super::UNTIL).parse().unwrap();
    let (journal, letters) = journal().await;
    let plan = plan(journal).await;
    let items: Dao<Item> = Dao::open(plan.clone()).await.unwrap();
    let files = Arc::new(Files::open(&dir));
    let incarnation = now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (items, files, role) = (items.clone(), files.clone(), role.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new((incarnation ^ (task + 1).wrapping_mul(0x9e37_79b9)) | 1);
                let mut n = 0u64;
                let mut pace = pace();
                while now() < until {
                    if let Some(tick) = &mut pace {
                        tick.tick().await;
                    }
                    n += 1;
                    let id = format!("{role}-{incarnation}-{task}-{n}");
                    let value =
                        (incarnation % 1_000_000) as i64 * 1_000_000 + (task * 100_000 + n) as i64;
                    one_operation(&items, &files, &id, &mut rng, value).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    if tokio::time::timeout(Duration::from_secs(90), plan.drained())
        .await
        .is_err()
    {
        panic!("{role}: the journal did not drain: {:?}", plan.stats());
    }
    let mut text = String::new();
    for l in letters().await {
        let value = l
            .entry
            .op
            .record()
            .and_then(|r| r.get("value"))
            .and_then(|v| v.as_i64());
        let value = value.map_or("-".to_owned(), |v| v.to_string());
        text.push_str(&format!("{} {value}\n", l.entry.key));
    }
    std::fs::write(dir.join("dead"), text).unwrap();
    plan.close().await.unwrap();
}

/// Dead letters, read once the journal has drained.
type Letters =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<DeadLetter>>>>>;

/// The process's journal: its own on its small disk, or, with
/// `OCTOPUS_HISTORY_NATS` set, the stream the fleet shares (whose dead
/// letters are the fleet's: values are unique per process, so each
/// process's records find theirs).
async fn journal() -> (Arc<dyn Fallback>, Letters) {
    #[cfg(feature = "nats")]
    if let Ok(url) = std::env::var(super::NATS) {
        let shared = Arc::new(JetStreamJournal::connect(&url).await.unwrap());
        // Which process drains, for the test that kills the drainer.
        let dir = PathBuf::from(env(super::DIR));
        std::fs::write(dir.join("owner"), shared.owner()).unwrap();
        let reader = shared.clone();
        if std::env::var(super::CHAIN).is_ok() {
            // The process's own journal, for when the stream is down too.
            let local = Journal::open(env(super::JOURNAL), JournalOptions::default()).unwrap();
            let own = local.clone();
            let letters: Letters = Box::new(move || {
                Box::pin(async move {
                    let mut all = reader.dead_letters().await.unwrap();
                    all.extend(own.dead_letters().unwrap());
                    all
                })
            });
            let links: Vec<Arc<dyn Fallback>> = vec![shared, Arc::new(local)];
            // Keys this process journals locally are claimed in memcached,
            // so the other processes leave them alone until they drain.
            let claims = MemcacheClaims::new(memcached().await, env(super::ROLE)).unwrap();
            let chain = FallbackChain::new(links).unwrap().claims(Arc::new(claims));
            return (Arc::new(chain), letters);
        }
        let letters: Letters =
            Box::new(move || Box::pin(async move { reader.dead_letters().await.unwrap() }));
        return (shared, letters);
    }
    let options = JournalOptions::default().segment_bytes(256 * 1024);
    let journal = Journal::open(env(super::JOURNAL), options).unwrap();
    let reader = journal.clone();
    let letters: Letters =
        Box::new(move || Box::pin(async move { reader.dead_letters().unwrap() }));
    (Arc::new(journal), letters)
}

/// At most one operation per `OCTOPUS_HISTORY_PACE_US` microseconds per
/// task, if set: a soak's history then stays a size the checker reads in
/// minutes.
fn pace() -> Option<tokio::time::Interval> {
    let every = super::setting("OCTOPUS_HISTORY_PACE_US", 0);
    (every > 0).then(|| {
        let mut tick = tokio::time::interval(Duration::from_micros(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    })
}

/// A random operation on a random key: `I id key op value time` before it,
/// `C id outcome read time` after it. Outcomes: `ok`, `journaled`,
/// `exists`, `conflict`, `notfound`, `unknown`.
async fn one_operation(items: &Dao<Item>, files: &Files, id: &str, rng: &mut Rng, value: i64) {
    // Half the operations on a few hot keys, the rest spread out (where a
    // stale row lives until something reads it).
    let key = if rng.below(2) == 0 {
        rng.below(HOT)
    } else {
        rng.below(KEYS)
    };
    let (op, arg) = match rng.below(100) {
        0..55 => ("read", 0),
        55..65 => ("read_many", 0),
        65..83 => ("update", value),
        83..92 => ("create", value),
        _ => ("delete", 0),
    };
    files.record(&format!("I {id} {key} {op} {arg} {}\n", now()));
    let (outcome, read): (&str, String) = match op {
        "read" => match items.read(key).await {
            Ok(r) => ("ok", shown(r.map(|i| i.value))),
            Err(e) => (refusal(&e), "-".into()),
        },
        "read_many" => match items.read_many(super::many(key)).await {
            Ok(rows) => (
                "ok",
                rows.iter()
                    .map(|r| shown(r.as_ref().map(|i| i.value)))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Err(e) => (refusal(&e), "-".into()),
        },
        // Read-modify-write: the value read is recorded with the outcome.
        "update" => match items.read(key).await {
            Ok(Some(mut item)) => {
                let before = shown(Some(item.value));
                item.value = value;
                (written(items.update(&mut item).await), before)
            }
            Ok(None) => ("notfound", shown(None)),
            Err(e) => (refusal(&e), "-".into()),
        },
        "create" => {
            let mut item = Item {
                id: key,
                value,
                version: 0,
            };
            (written(items.create(&mut item).await), "-".into())
        }
        _ => match items.delete(key).await {
            Ok(Deletion::NotFound) => ("notfound", "-".into()),
            Ok(Deletion::Journaled) => ("journaled", "-".into()),
            Ok(_) => ("ok", "-".into()),
            Err(e) => (refusal(&e), "-".into()),
        },
    };
    if outcome == "journaled" && op != "delete" {
        files.mark(key, value);
    }
    files.record(&format!("C {id} {outcome} {read} {}\n", now()));
}

fn shown(value: Option<i64>) -> String {
    value.map_or("none".into(), |v| v.to_string())
}

fn written(out: Result<WriteOutcome, Error>) -> &'static str {
    match out {
        Ok(WriteOutcome::Journaled) => "journaled",
        Ok(_) => "ok",
        Err(e) => refusal(&e),
    }
}

fn refusal(e: &Error) -> &'static str {
    // Each failure's text on stderr, to see why a run stalls.
    if std::env::var_os("OCTOPUS_HISTORY_SHOW_ERRORS").is_some() {
        eprintln!("{} failed: {e}", env(super::ROLE));
    }
    match e {
        Error::Conflict { .. } => "conflict",
        Error::AlreadyExists { .. } => "exists",
        Error::NotFound { .. } => "notfound",
        _ => "unknown",
    }
}
