//! Fixtures of MariaDB/MySQL: the shared test server (`OCTOPUS_MYSQL_URL`,
//! by default root without a password on 127.0.0.1:3306, which
//! `./scripts/services.sh` provisions), a fresh database per test on it, and
//! servers of a test's own ([`PrivateMariadb`]).
//!
//! A fresh database is named after its test, the time, the process and a
//! counter, so tests of one run, and runs side by side (two people testing on
//! one server), never share one. It is left behind for a look after a
//! failure, and dropped by a later [`fresh_database`] of the same name once
//! it is an hour old.

mod private;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use octopus_adapters::mysql::MysqlStore;

pub use private::{APP_USER, PrivateMariadb};

/// How old a fresh database must be before a later one of its name drops
/// it: longer than any test (soaks included) runs.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The longest name MySQL allows for a database.
const NAME_LIMIT: usize = 64;

/// `OCTOPUS_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`.
pub fn mysql_url() -> String {
    std::env::var("OCTOPUS_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// The test server's address, from [`mysql_url`] (what a fault proxy in
/// front of it forwards to).
pub fn mysql_addr() -> SocketAddr {
    let url = mysql_url();
    let opts = mysql_async::Opts::from_url(&url)
        .unwrap_or_else(|e| panic!("OCTOPUS_MYSQL_URL `{url}` is not a MySQL URL: {e}"));
    format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
        .parse()
        .unwrap_or_else(|e| panic!("OCTOPUS_MYSQL_URL `{url}` must name an IP address: {e}"))
}

/// The server's URL ([`mysql_url`]) with its database replaced by
/// `database`; its parameters are kept.
pub fn url_with_database(database: &str) -> String {
    let url = mysql_url();
    let (base, query) = url
        .split_once('?')
        .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
    let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

/// `url`'s user and database, reached at `addr` (a fault proxy in front of
/// the server) with parameters `params` (`deadline_ms=500&pool_size=4`)
/// instead of `url`'s.
pub fn url_via(url: &str, addr: SocketAddr, params: &str) -> String {
    let opts = mysql_async::Opts::from_url(url)
        .unwrap_or_else(|e| panic!("`{url}` is not a MySQL URL: {e}"));
    let user = opts.user().unwrap_or("root");
    let password = opts.pass().map(|p| format!(":{p}")).unwrap_or_default();
    let database = opts
        .db_name()
        .unwrap_or_else(|| panic!("`{url}` names no database"));
    format!("mysql://{user}{password}@{addr}/{database}?{params}")
}

/// A connection to the test server as its configured user (root: for
/// creating databases, users and global settings). Panics, saying how to
/// start the server, if it does not answer.
pub async fn admin() -> mysql_async::Conn {
    let url = mysql_url();
    let server = url.split('?').next().unwrap_or(&url);
    mysql_async::Conn::from_url(format!("{server}?prefer_socket=false"))
        .await
        .unwrap_or_else(|e| {
            panic!("MySQL at {server} is not reachable ({e}); start it with ./scripts/services.sh")
        })
}

/// Creates an empty database for test `name` (see the module's doc for its
/// name) and returns its URL ([`url_with_database`]).
pub async fn fresh_database(name: &str) -> String {
    static CREATED: AtomicU32 = AtomicU32::new(0);
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "a database name of letters, digits and `_`, not `{name}`"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs();
    let n = CREATED.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("_{now}_{}_{n}", std::process::id());
    let mut prefix = format!("octopus_{name}");
    // Shortened to fit: the suffix alone keeps the name unique.
    prefix.truncate(NAME_LIMIT - suffix.len());
    let database = format!("{prefix}{suffix}");
    let mut conn = admin().await;
    drop_stale(&mut conn, &prefix, now).await;
    conn.query_drop(format!("CREATE DATABASE `{database}`"))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE `{database}`: {e}"));
    conn.disconnect().await.unwrap();
    url_with_database(&database)
}

/// Drops the databases [`fresh_database`] made for `prefix` that are older
/// than [`STALE_AFTER`].
async fn drop_stale(conn: &mut mysql_async::Conn, prefix: &str, now: u64) {
    let like = prefix.replace('_', "\\_");
    let names: Vec<String> = conn
        .query(format!("SHOW DATABASES LIKE '{like}\\_%'"))
        .await
        .unwrap();
    for database in names {
        let mut parts = database.rsplitn(4, '_');
        let (Some(n), Some(pid), Some(created), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let ours = rest == prefix && n.parse::<u32>().is_ok() && pid.parse::<u32>().is_ok();
        let Ok(created) = created.parse::<u64>() else {
            continue;
        };
        if ours && now.saturating_sub(created) > STALE_AFTER.as_secs() {
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{database}`"))
                .await
                .unwrap();
        }
    }
}

/// A store on a fresh database for test `name`.
pub async fn mysql_store(name: &str) -> MysqlStore {
    MysqlStore::new(&fresh_database(name).await).unwrap()
}
