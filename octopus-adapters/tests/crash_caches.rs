//! An application SIGKILLed while it journals writes (MySQL unreachable),
//! restarted with MySQL back: once its journal drains, every read through
//! its caches (the in-process cache and the shared memcached) equals what
//! MySQL holds, and MySQL holds every acknowledged write.
//!
//! The application is an OS process: the test binary runs itself as
//! [`crash_caches_child`] with the journal directory, the MySQL URL (through
//! a fault proxy that refuses connections) and the memcached namespace in
//! its environment. It updates and deletes rows whose old versions sit in
//! memcached, printing `try`/`ack` lines around each write; the test kills
//! it as it starts a write, after a varying number of acknowledgements,
//! several times, each run reopening the journal left by the last. A kill
//! lands between a journal append and the cache step that follows it
//! often: memcached then holds a row older than a write the journal keeps
//! (and replay applies).
#![cfg(all(feature = "mysql", feature = "memcache"))]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fault_proxy::{FaultProxy, Mode};
use octopus::journal::{Journal, JournalOptions};
use octopus::{CachePolicy, Dao, Key, MemoryStore, Model, Plan, Store};
use octopus_adapters::memcache::{MemcacheOptions, MemcacheStore};
use octopus_adapters::mysql::MysqlStore;
use octopus_test_support::memcache::{fresh_namespace, memcache_addr, memcache_url};
use octopus_test_support::mysql::{fresh_database, mysql_addr, url_via};
use octopus_test_support::{check, eventually, poll_until};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "crash_rows")]
struct Row {
    #[octopus(key)]
    id: u64,
    value: i64,
}

const KEYS: u64 = 60;
/// Keys from here on are deleted by the child, never written again.
const DELETED_FROM: u64 = 50;
const KILLS: u64 = 12;
const JOURNAL_DIR: &str = "OCTOPUS_CRASH_CACHES_JOURNAL";
const URL: &str = "OCTOPUS_CRASH_CACHES_URL";
const NAMESPACE: &str = "OCTOPUS_CRASH_CACHES_NAMESPACE";
const MEMCACHED: &str = "OCTOPUS_CRASH_CACHES_MEMCACHED";
const ROUND: &str = "OCTOPUS_CRASH_CACHES_ROUND";

async fn memcached(url: &str, namespace: &str) -> Arc<MemcacheStore> {
    let options = MemcacheOptions::from_url(url)
        .unwrap()
        .namespace(namespace)
        .unwrap();
    Arc::new(MemcacheStore::with_options(options).await.unwrap())
}

async fn plan(url: &str, cache: Arc<MemcacheStore>, journal: Option<Journal>) -> Arc<Plan> {
    let mut b = Plan::builder(Arc::new(MysqlStore::new(url).unwrap()))
        .cache(Arc::new(MemoryStore::new()), CachePolicy::Invalidate)
        .cache(cache, CachePolicy::Invalidate);
    if let Some(journal) = journal {
        b = b.journal(journal);
    }
    Arc::new(b.build().unwrap())
}

/// The application the test kills: not a test of its own (without its
/// environment it returns at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_caches_child() {
    let Ok(dir) = std::env::var(JOURNAL_DIR) else {
        return;
    };
    let env = |name| std::env::var(name).unwrap();
    let round: i64 = env(ROUND).parse().unwrap();
    let journal = Journal::open(&dir, JournalOptions::default()).expect("the journal opens");
    let cache = memcached(&env(MEMCACHED), &env(NAMESPACE)).await;
    let rows: Dao<Row> = Dao::open(plan(&env(URL), cache, Some(journal)).await)
        .await
        .unwrap();
    for i in 0.. {
        let id = (i * 7 + round as u64) % KEYS;
        if id >= DELETED_FROM {
            println!("try-delete {id}");
            rows.delete(id).await.unwrap();
            println!("ack-delete {id}");
        } else {
            let value = round * 1_000_000 + i as i64;
            println!("try {id} {value}");
            rows.update(&mut Row { id, value }).await.unwrap();
            println!("ack {id} {value}");
        }
    }
}

/// What the child was told, per key: the values acknowledged (in order) and
/// those tried after the last acknowledgement (a kill may have applied them).
#[derive(Default, Debug)]
struct History {
    acked: Option<Option<i64>>,
    tried_after: Vec<Option<i64>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_journal_acks_leaves_no_stale_cache() {
    let url = fresh_database("crash_caches").await;
    let namespace = fresh_namespace("crash-caches");
    let proxy = FaultProxy::start(mysql_addr()).await.unwrap();
    let proxied = url_via(&url, proxy.addr(), "deadline_ms=500");

    // Seed, and cache every row in memcached.
    {
        let cache = memcached(&memcache_url(), &namespace).await;
        let rows: Dao<Row> = Dao::open(plan(&url, cache, None).await).await.unwrap();
        for id in 0..KEYS {
            rows.create(&mut Row { id, value: -1 }).await.unwrap();
            rows.read(id).await.unwrap().unwrap();
        }
    }
    proxy.set(Mode::Refuse).await;
    // The application's memcached is slow: its cache step after each
    // journal append takes a while, and the test kills it in that step.
    let slow = FaultProxy::start(memcache_addr()).await.unwrap();
    slow.set(Mode::Latency(Duration::from_millis(20))).await;

    let journal_dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut history: BTreeMap<u64, History> = BTreeMap::new();
    let mut acks_total = 0;
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_caches_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(JOURNAL_DIR, journal_dir.path())
            .env(URL, &proxied)
            .env(NAMESPACE, &namespace)
            .env(MEMCACHED, format!("memcache://{}", slow.addr()))
            .env(ROUND, (round + 1).to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let kill_at = 2 + (round * 7) % 9;
        let mut acks = 0;
        let mut journal_bytes = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            let mut parts = line.split_whitespace();
            let (Some(what), Some(id)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(id) = id.parse::<u64>() else { continue };
            let value = parts.next().and_then(|v| v.parse::<i64>().ok());
            let h = history.entry(id).or_default();
            match what {
                "try" => h.tried_after.push(value),
                "try-delete" => h.tried_after.push(None),
                "ack" | "ack-delete" => {
                    h.acked = Some(value);
                    h.tried_after.clear();
                    acks += 1;
                    journal_bytes = segment_bytes(journal_dir.path());
                }
                _ => continue,
            }
            // Killed once the next write's journal line is written, in its
            // (slow) cache step.
            if acks == kill_at && what.starts_with("try") {
                let what = format!("the journal to grow past {journal_bytes} bytes");
                eventually(&what, Duration::from_secs(10), async || {
                    let bytes = segment_bytes(journal_dir.path());
                    check(bytes > journal_bytes, bytes)
                })
                .await;
                child.kill().unwrap();
                break;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            !status.success() && acks == kill_at,
            "round {round}: the child ended on its own after {acks} acks ({status})"
        );
        acks_total += acks;
    }

    // The application restarts while MySQL is still down, and answers its
    // pending keys from its journal. Another server sharing memcached stops
    // serving rows older than those entries (it may fail to read them
    // instead, as MySQL is down): the two never disagree.
    let journal = Journal::open(journal_dir.path(), JournalOptions::default()).unwrap();
    let plan = plan(
        &proxied,
        memcached(&memcache_url(), &namespace).await,
        Some(journal),
    )
    .await;
    let rows: Dao<Row> = Dao::open(plan.clone()).await.unwrap();
    let other = Dao::<Row>::new(plan_with_only(
        memcached(&memcache_url(), &namespace).await,
        &proxied,
    ));
    let what = "another server to read no row older than the journal's";
    let stale = poll_until(Duration::from_secs(10), async || {
        let mut stale = Vec::new();
        for (id, h) in &history {
            let here = rows.read(*id).await.unwrap().map(|r| r.value);
            if let (Ok(Some(read)), Some(acked)) = (other.read(*id).await, h.acked) {
                let read = Some(read.value);
                if read != here || (read != acked && !h.tried_after.contains(&read)) {
                    stale.push(format!(
                        "key {id}: {read:?}; the restarted server reads {here:?}, the last acknowledged write {acked:?}"
                    ));
                }
            }
        }
        check(stale.is_empty(), stale)
    })
    .await;
    if let Err(stale) = stale {
        panic!(
            "waited for {what}: with the journal reopened and MySQL down, another server still reads older rows from memcached:\n{}",
            stale.join("\n")
        );
    }

    // MySQL is back: the journal drains.
    proxy.set(Mode::Pass).await;
    if tokio::time::timeout(Duration::from_secs(60), plan.drained())
        .await
        .is_err()
    {
        panic!("the journal did not drain: {:?}", plan.stats());
    }
    let mysql = MysqlStore::new(&url).unwrap();
    let shared = Dao::<Row>::new(plan_with_only(
        memcached(&memcache_url(), &namespace).await,
        &url,
    ));
    let mut problems = Vec::new();
    for id in 0..KEYS {
        let stored = mysql
            .get(Row::SCHEMA, &Key::UInt(id))
            .await
            .unwrap()
            .map(|r| Row::from_record(r).unwrap().value);
        if let Some(h) = history.get(&id)
            && let Some(acked) = h.acked
            && stored != acked
            && !h.tried_after.contains(&stored)
        {
            problems.push(format!(
                "key {id}: MySQL holds {stored:?}, the last acknowledged write was {acked:?}"
            ));
        }
        for (through, read) in [
            ("the restarted plan", rows.read(id).await.unwrap()),
            ("memcached", shared.read(id).await.unwrap()),
        ] {
            let read = read.map(|r| r.value);
            if read != stored {
                problems.push(format!(
                    "key {id}: a read through {through} returned {read:?}, MySQL holds {stored:?}"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "after {KILLS} kills and {acks_total} acknowledged writes:\n{}",
        problems.join("\n")
    );
}

/// The bytes in the journal's segment files.
fn segment_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("journal-"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// A plan reading memcached, then MySQL: another server sharing the cache.
fn plan_with_only(cache: Arc<MemcacheStore>, url: &str) -> Arc<Plan> {
    Arc::new(
        Plan::builder(Arc::new(MysqlStore::new(url).unwrap()))
            .cache(cache, CachePolicy::Invalidate)
            .build()
            .unwrap(),
    )
}
