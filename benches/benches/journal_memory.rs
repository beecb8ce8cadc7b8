//! The journal's memory and open time with a large outage behind it (not a
//! criterion benchmark: resident memory is measured in separate processes,
//! so what one phase allocated never counts against the next).
//!
//! 1. `write`: 64 tasks journal N creates (MySQL down: nothing drains);
//!    resident memory before and after, pending entries, time.
//! 2. `reopen`: opens that journal in a fresh process; open time, resident
//!    memory, a read of a pending key.
//! 3. `drain`: opens it again behind a plan over MySQL (a fresh database)
//!    and drains it; time, rows/s, and the process's peak resident memory.
//! 4. `replayed`: a journal whose N entries were all replayed (checkpoint at
//!    N) but whose last segment is still there, with 1,000 pending after
//!    them; open time.
//!
//! N is 1,000,000, or `OCTOPUS_JOURNAL_ENTRIES` (10,000,000 for the
//! outage of BENCHMARKS.md: about 2 GB of segments and a few minutes). Run
//! with `cargo bench -p octopus-benches --bench journal_memory`.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use octopus::journal::{Journal, JournalOptions, Pending};
use octopus::{Key, Model, Write};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "orders")]
struct Order {
    #[octopus(key)]
    id: u64,
    customer: String,
    total_cents: i64,
    #[octopus(version)]
    version: u64,
}

fn order(id: u64) -> Write {
    let o = Order {
        id,
        customer: format!("customer {}", id % 10_000),
        total_cents: (id % 100_000) as i64,
        version: 1,
    };
    Write::Insert(o.to_record().unwrap())
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    status_kb("VmRSS:") * 1024
}

/// This process's peak resident memory, in bytes.
fn peak_rss() -> u64 {
    status_kb("VmHWM:") * 1024
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn entries() -> u64 {
    std::env::var("OCTOPUS_JOURNAL_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Journals orders 0 to `n` from 64 tasks.
async fn journal_orders(journal: &Journal, n: u64) {
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let journal = journal.clone();
            tokio::spawn(async move {
                for id in (t..n).step_by(64) {
                    journal.append(Order::SCHEMA, &order(id)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

async fn write(dir: &Path, n: u64) {
    let before = rss();
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    let start = Instant::now();
    journal_orders(&journal, n).await;
    let took = start.elapsed();
    let after = rss();
    assert_eq!(journal.pending(), n);
    println!(
        "journal_memory/write (peak resident {:.1} MB):",
        mb(peak_rss())
    );
    println!(
        "journal_memory/write: {n} creates by 64 tasks in {:.1} s ({:.0}/s); resident {:.1} MB before, {:.1} MB after: {:.0} bytes per pending entry; {:.1} MB on disk",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        mb(before),
        mb(after),
        (after.saturating_sub(before)) as f64 / n as f64,
        mb(disk_bytes(dir))
    );
    journal.close().await.unwrap();
}

async fn reopen(dir: &Path, n: u64) {
    let before = rss();
    let start = Instant::now();
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    let took = start.elapsed();
    let after = rss();
    assert_eq!(journal.pending(), n);
    let key = Key::UInt(n / 2);
    let read = Instant::now();
    match journal.lookup(Order::SCHEMA, &key).unwrap() {
        Some(Pending::Put(_)) => {}
        other => panic!("pending order {key} reads as {other:?}"),
    }
    println!(
        "journal_memory/reopen: {n} pending opened in {:.0} ms; resident {:.1} MB before, {:.1} MB after: {:.0} bytes per pending entry; a pending read took {:.0} µs",
        took.as_secs_f64() * 1e3,
        mb(before),
        mb(after),
        (after.saturating_sub(before)) as f64 / n as f64,
        read.elapsed().as_secs_f64() * 1e6
    );
    journal.close().await.unwrap();
}

/// Drains the journal in `dir` into a fresh MySQL database.
async fn drain(dir: &Path, n: u64) {
    let url = common::fresh_database("journal_memory").await;
    let store = octopus_adapters::mysql::MysqlStore::new(&url).unwrap();
    octopus::Store::ensure_schema(&store, Order::SCHEMA)
        .await
        .unwrap();
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    let start = Instant::now();
    let plan = Arc::new(
        octopus::Plan::builder(Arc::new(store))
            .journal(journal.clone())
            .build()
            .unwrap(),
    );
    let _dao: octopus::Dao<Order> = octopus::Dao::new(plan.clone());
    plan.drained().await;
    let took = start.elapsed();
    let stats = journal.stats();
    assert_eq!((stats.replayed, stats.dead_letters), (n, 0));
    plan.close().await.unwrap();
    println!(
        "journal_memory/drain: {n} entries replayed into MySQL in {:.1} s ({:.0} rows/s); peak resident {:.1} MB",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        mb(peak_rss())
    );
}

/// Writes N entries, marks them replayed (as a drain would, through a
/// checkpoint), then 1,000 more; opens it again and times the open.
async fn replayed(dir: &Path, n: u64) {
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    journal_orders(&journal, n).await;
    journal.close().await.unwrap();
    drop(journal);
    // Drain all N through a primary in this process.
    {
        let journal = Journal::open(dir, JournalOptions::default()).unwrap();
        let primary = Arc::new(octopus::MemoryStore::new());
        let plan = Arc::new(
            octopus::Plan::builder(primary)
                .journal(journal.clone())
                .build()
                .unwrap(),
        );
        let _dao: octopus::Dao<Order> = octopus::Dao::new(plan.clone());
        plan.drained().await;
        plan.close().await.unwrap();
    }
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    for id in n..n + 1000 {
        journal.append(Order::SCHEMA, &order(id)).await.unwrap();
    }
    journal.close().await.unwrap();
    let start = Instant::now();
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    let took = start.elapsed();
    assert_eq!(journal.pending(), 1000);
    println!(
        "journal_memory/open_after_replay: {n} replayed and 1000 pending opened in {:.0} ms ({:.1} MB of segments on disk)",
        took.as_secs_f64() * 1e3,
        mb(disk_bytes(dir))
    );
    journal.close().await.unwrap();
}

fn child(phase: &str, dir: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .arg(phase)
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "phase {phase} failed");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = entries();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.get(1).map(String::as_str) {
        Some("write") => rt.block_on(write(Path::new(&args[2]), n)),
        Some("reopen") => rt.block_on(reopen(Path::new(&args[2]), n)),
        Some("drain") => rt.block_on(drain(Path::new(&args[2]), n)),
        // The open-time figure is for 1M replayed entries, whatever N.
        Some("replayed") => rt.block_on(replayed(Path::new(&args[2]), 1_000_000)),
        // `cargo bench` passes `--bench`: run every phase.
        _ => {
            let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
            child("write", dir.path());
            child("reopen", dir.path());
            child("drain", dir.path());
            let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
            child("replayed", dir.path());
        }
    }
}
