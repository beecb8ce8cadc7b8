//! Fixtures of PostgreSQL: the shared test server (`OCTOPUS_POSTGRES_URL`,
//! by default user `postgres` without a password on 127.0.0.1:5432, database
//! `test`, which `./scripts/services.sh` provisions), a fresh schema per test
//! in its database, and servers of a test's own ([`PrivatePostgres`]).
//!
//! A fresh schema is named after its test, the time, the process and a
//! counter, so tests of one run, and runs side by side (two people testing on
//! one server), never share one. It is left behind for a look after a
//! failure, and dropped by a later [`fresh_schema`] of the same name once it
//! is an hour old.
//!
//! A store reaches its schema through the URL parameter `schema`, which
//! these fixtures add to the server's URL (its other parameters are kept).

mod private;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octopus_adapters::postgres::PostgresStore;
use tokio_postgres::{Client, NoTls};

pub use private::PrivatePostgres;

/// How old a fresh schema must be before a later one of its name drops it:
/// longer than any test (soaks included) runs.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The longest identifier PostgreSQL keeps (a longer one is cut silently).
const NAME_LIMIT: usize = 63;

/// The port of a URL that names none.
const DEFAULT_PORT: u16 = 5432;

/// How long a fixture's connection may take to be ready.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// `OCTOPUS_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`.
pub fn postgres_url() -> String {
    std::env::var("OCTOPUS_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The test server's address, from [`postgres_url`] (what a fault proxy in
/// front of it forwards to).
pub fn postgres_addr() -> SocketAddr {
    let url = postgres_url();
    let host = UrlParts::of(&url).host;
    if let Ok(addr) = host.parse() {
        return addr;
    }
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .unwrap_or_else(|e| {
            panic!("OCTOPUS_POSTGRES_URL `{url}` must name an IP address, not `{host}`: {e}")
        });
    SocketAddr::new(ip, DEFAULT_PORT)
}

/// `url`'s user, password and database, reached at `addr` (a fault proxy in
/// front of the server) with parameters `params`
/// (`deadline_ms=500&pool_size=4&schema=s`) instead of `url`'s.
pub fn url_via(url: &str, addr: SocketAddr, params: &str) -> String {
    let parts = UrlParts::of(url);
    let user = parts.userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{params}")
    };
    format!("{}://{user}{addr}{}{query}", parts.scheme, parts.path)
}

/// A connection to the test server as its configured user (`postgres`: for
/// creating schemas and roles, and for looking at other sessions), its
/// connection task spawned on the current runtime. Panics, saying how to
/// start the server, if it does not answer.
pub async fn admin() -> Client {
    let url = postgres_url();
    let server = UrlParts::of(&url).without_query();
    connect(&server, CONNECT_WITHIN).await.unwrap_or_else(|e| {
        panic!("PostgreSQL does not answer at {server} ({e}); start it with ./scripts/services.sh")
    })
}

/// Creates an empty schema for test `test` (see the module's doc for its
/// name) and returns a store URL for it: [`postgres_url`] with parameter
/// `schema=<name>`.
pub async fn fresh_schema(test: &str) -> String {
    static CREATED: AtomicU32 = AtomicU32::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs();
    let n = CREATED.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("_{now}_{}_{n}", std::process::id());
    let mut prefix: String = format!("octopus_{test}")
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    // Shortened to fit: the suffix alone keeps the name unique.
    prefix.truncate(NAME_LIMIT - suffix.len());
    let schema = format!("{prefix}{suffix}");
    let client = admin().await;
    drop_stale(&client, &prefix, now).await;
    client
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .await
        .unwrap_or_else(|e| panic!("CREATE SCHEMA {schema}: {}", describe(&e)));
    with_schema(&postgres_url(), &schema)
}

/// A store on a fresh schema for test `test`.
pub async fn postgres_store(test: &str) -> PostgresStore {
    PostgresStore::new(&fresh_schema(test).await).unwrap()
}

/// Drops the schemas [`fresh_schema`] made for `prefix` that are older than
/// [`STALE_AFTER`].
async fn drop_stale(client: &Client, prefix: &str, now: u64) {
    let like = format!("{}\\_%", prefix.replace('_', "\\_"));
    let rows = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
            &[&like],
        )
        .await
        .unwrap_or_else(|e| panic!("listing the schemas named {prefix}_*: {}", describe(&e)));
    for row in rows {
        let schema: String = row.get(0);
        if !is_stale(&schema, prefix, now) {
            continue;
        }
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        // A test of the same name in another process may be dropping it at
        // the same time; what is left is dropped by a later one.
        if let Err(e) = client.batch_execute(&drop).await {
            eprintln!("{drop}: {}", describe(&e));
        }
    }
}

/// Whether `schema` is `<prefix>_<created>_<pid>_<n>` and was created more
/// than [`STALE_AFTER`] before `now`.
fn is_stale(schema: &str, prefix: &str, now: u64) -> bool {
    let mut parts = schema.rsplitn(4, '_');
    let (Some(n), Some(pid), Some(created), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let ours = rest == prefix && n.parse::<u32>().is_ok() && pid.parse::<u32>().is_ok();
    match created.parse::<u64>() {
        Ok(created) => ours && now.saturating_sub(created) > STALE_AFTER.as_secs(),
        Err(_) => false,
    }
}

/// `url` with parameter `schema=<schema>` (replacing one it has); its other
/// parameters are kept.
fn with_schema(url: &str, schema: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let param = format!("schema={schema}");
    let params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("schema="))
        .chain([param.as_str()])
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// Connects to `url` (which tokio-postgres must understand: no store
/// parameters) without TLS and spawns the connection's task on the current
/// runtime; gives up after `within`. The session is named after this crate
/// (`application_name`), so a test can tell it from a store's.
async fn connect(url: &str, within: Duration) -> Result<Client, String> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("{url}: {}", describe(&e)))?;
    config
        .application_name("octopus-test-support")
        .connect_timeout(within);
    match tokio::time::timeout(within, config.connect(NoTls)).await {
        Ok(Ok((client, connection))) => {
            // It ends with an error when the server goes away: the client
            // reports that to whoever still uses it.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err(format!("no answer within {within:?}")),
    }
}

/// `e` and its causes (a tokio-postgres error says only its kind, "db
/// error", and leaves the server's message to its cause).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}

/// The pieces of `scheme://[userinfo@]host[:port][/database][?query]`
/// but the query, as written (nothing decoded).
struct UrlParts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host: &'a str,
    /// `/database`, or empty.
    path: &'a str,
}

impl<'a> UrlParts<'a> {
    /// Splits `url`; panics if it is not a PostgreSQL URL.
    fn of(url: &'a str) -> Self {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
            .unwrap_or_else(|| {
                panic!("`{url}` is not a PostgreSQL URL (postgres://user@host:port/database)")
            });
        let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, host) = authority
            .rsplit_once('@')
            .map_or((None, authority), |(u, h)| (Some(u), h));
        UrlParts {
            scheme,
            userinfo,
            host,
            path,
        }
    }

    /// The URL without its parameters.
    fn without_query(&self) -> String {
        let user = self.userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        format!("{}://{user}{}{}", self.scheme, self.host, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_via_a_proxy_keeps_user_password_and_database() {
        let proxy: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let url = "postgres://app:s%40cret@10.0.0.5:5433/test?pool_size=9&schema=a";
        assert_eq!(
            url_via(url, proxy, "deadline_ms=500&schema=b"),
            "postgres://app:s%40cret@127.0.0.1:40001/test?deadline_ms=500&schema=b"
        );
        assert_eq!(
            url_via("postgresql://db.example/x", proxy, ""),
            "postgresql://127.0.0.1:40001/x"
        );
    }

    #[test]
    fn the_schema_parameter_is_added_or_replaced() {
        assert_eq!(
            with_schema("postgres://u@h/test", "s1"),
            "postgres://u@h/test?schema=s1"
        );
        assert_eq!(
            with_schema("postgres://u@h/test?pool_size=4&schema=old", "s1"),
            "postgres://u@h/test?pool_size=4&schema=s1"
        );
    }

    #[test]
    fn only_old_schemas_of_the_same_prefix_are_stale() {
        let now = 1_800_000_000;
        let old = now - STALE_AFTER.as_secs() - 1;
        assert!(is_stale(&format!("octopus_t_{old}_42_0"), "octopus_t", now));
        assert!(!is_stale(
            &format!("octopus_t_{now}_42_0"),
            "octopus_t",
            now
        ));
        assert!(!is_stale(
            &format!("octopus_t_x_{old}_42_0"),
            "octopus_t",
            now
        ));
        assert!(!is_stale("octopus_t_notes", "octopus_t", now));
    }

    #[test]
    fn the_parts_of_a_url() {
        let parts = UrlParts::of("postgres://u:p@[::1]:5433/db?a=1");
        assert_eq!(parts.host, "[::1]:5433");
        assert_eq!(parts.without_query(), "postgres://u:p@[::1]:5433/db");
    }
}
