//! Setup shared by the benchmark files.

#![allow(dead_code)]

pub mod postgres;
pub mod versioned;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::Criterion;
use mysql_async::prelude::Queryable;
use octopus::Model;

/// The row every benchmark reads and writes.
#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "bench_rows")]
pub struct BenchRow {
    #[octopus(key)]
    pub id: u64,
    pub name: String,
    pub value: i64,
}

impl BenchRow {
    pub fn new(id: u64) -> Self {
        BenchRow {
            id,
            name: format!("row number {id} with a name of ordinary length"),
            value: id as i64,
        }
    }

    /// Row `id` as an update leaves it: `value` replaced. Each update of a
    /// benchmark passes a new `value` (see [`next_value`]), so the row's
    /// content changes and the database really writes it: MySQL (InnoDB)
    /// and SQLite skip writing a row whose new content is identical, and
    /// InnoDB then commits without flushing its redo log.
    pub fn with_value(id: u64, value: i64) -> Self {
        BenchRow {
            value,
            ..BenchRow::new(id)
        }
    }
}

/// A value no row holds yet: the seeded rows hold their id (below
/// 10,000,000), and every call returns a new one.
pub fn next_value(counter: &AtomicU64) -> i64 {
    counter.fetch_add(1, Ordering::Relaxed) as i64
}

/// The counter [`next_value`] starts from.
pub const FIRST_VALUE: u64 = 1_000_000_000;

/// Rows seeded before the read and update benchmarks.
pub const ROWS: u64 = 10_000;

pub fn mysql_url() -> String {
    std::env::var("OCTOPUS_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

pub fn memcache_addr() -> String {
    std::env::var("OCTOPUS_MEMCACHE_URL")
        .unwrap_or_else(|_| "memcache://127.0.0.1:11211".into())
        .trim_start_matches("memcache://")
        .split(',')
        .next()
        .unwrap_or("127.0.0.1:11211")
        .to_owned()
}

/// A fresh database `octopus_bench_<name>`; returns its URL (TCP).
pub async fn fresh_database(name: &str) -> String {
    let url = mysql_url();
    let base = url.split('?').next().unwrap_or(&url).to_owned();
    let root = base
        .rsplit_once('/')
        .map_or(base.as_str(), |(r, _)| r)
        .to_owned();
    let mut conn = mysql_async::Conn::from_url(format!("{base}?prefer_socket=false"))
        .await
        .unwrap_or_else(|e| {
            panic!("MySQL at {url} is not reachable ({e}); start it with ./scripts/services.sh")
        });
    conn.query_drop(format!("DROP DATABASE IF EXISTS octopus_bench_{name}"))
        .await
        .unwrap();
    conn.query_drop(format!("CREATE DATABASE octopus_bench_{name}"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    format!("{root}/octopus_bench_{name}")
}

/// A raw mysql_async pool used well: fixed size (16), no reset on
/// checkout, TCP.
pub fn raw_mysql_pool(url: &str) -> mysql_async::Pool {
    raw_mysql_pool_sized(url, 16)
}

/// [`raw_mysql_pool`] with `size` connections (the Octopus side's
/// `pool_size`).
pub fn raw_mysql_pool_sized(url: &str, size: usize) -> mysql_async::Pool {
    let opts = mysql_async::Opts::from_url(url).unwrap();
    let pool_opts = mysql_async::PoolOpts::default()
        .with_constraints(mysql_async::PoolConstraints::new(size, size).unwrap())
        .with_reset_connection(false);
    mysql_async::Pool::new(
        mysql_async::OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .tcp_nodelay(true)
            .stmt_cache_size(256)
            .pool_opts(pool_opts),
    )
}

pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Criterion settings: enough samples for stable medians, short enough to
/// run everything in a few minutes on two cores.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The `p` quantile of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Prints the p50 and p99 of `samples` under `name`.
pub fn report(name: &str, samples: &std::sync::Mutex<Vec<Duration>>) {
    let mut s = samples.lock().unwrap().clone();
    s.sort();
    if s.is_empty() {
        return;
    }
    println!(
        "{name}: p50 {:.1} us, p99 {:.1} us over {} calls",
        percentile(&s, 0.5).as_secs_f64() * 1e6,
        percentile(&s, 0.99).as_secs_f64() * 1e6,
        s.len()
    );
}
