//! Probes: whether each server a config names answers, within its
//! deadline, and what it is (what `octopus doctor` prints). A probe opens
//! nothing it would keep: a journal directory is checked (writable, lock
//! free), not opened.

use std::time::Duration;

use octopus::Result;
use octopus::journal::Journal;

use crate::url::StoreUrl;

/// What a URL is for in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A plan's primary.
    Primary,
    /// A cache level.
    Cache,
    /// A plan's fallback.
    Fallback,
}

impl Role {
    /// `primary`, `cache` or `fallback`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Cache => "cache",
            Role::Fallback => "fallback",
        }
    }
}

/// Reaches the server (or directory) `url` names in `role` and says what
/// it is: `MariaDB 10.11.19`, `PostgreSQL 15.19`, `memcached 1.6.18`, …
/// An error names the URL (without its password) and why.
pub async fn probe(url: &str, role: Role) -> Result<String> {
    let parsed = StoreUrl::parse(url)?;
    match (role, parsed.scheme()) {
        (Role::Fallback, "file") => journal_dir(&parsed),
        (Role::Fallback, "nats") => nats(url).await,
        (Role::Fallback, _) => crate::config::open_fallback(url)
            .await
            .map(|_| "fallback".into()),
        (Role::Cache, "memcache") => memcached(url).await,
        (Role::Cache, _) => crate::config::open_cache(url)
            .await
            .map(|_| "in-process".into()),
        (Role::Primary, _) => primary(url, parsed.scheme()).await,
    }
}

async fn primary(url: &str, scheme: &str) -> Result<String> {
    match scheme {
        #[cfg(feature = "mysql")]
        "mysql" => {
            let store = crate::mysql::MysqlStore::new(url)?;
            let version = store.server_version().await?;
            let kind = if version.to_ascii_lowercase().contains("mariadb") {
                "MariaDB"
            } else {
                "MySQL"
            };
            Ok(format!("{kind} {version}"))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let store = crate::postgres::PostgresStore::new(url)?;
            Ok(format!("PostgreSQL {}", store.server_version().await?))
        }
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            crate::config::open_store(url).await?;
            Ok(format!("SQLite {}", rusqlite::version()))
        }
        _ => crate::config::open_store(url)
            .await
            .map(|s| s.name().to_owned()),
    }
}

/// The directory of a `file://` journal: writable, its lock free.
fn journal_dir(url: &StoreUrl<'_>) -> Result<String> {
    let dir = url.location();
    Journal::check_dir(dir)?;
    Ok("journal directory writable, lock free".into())
}

#[cfg(feature = "nats")]
async fn nats(url: &str) -> Result<String> {
    crate::nats::JetStreamJournal::server_version(url).await
}

#[cfg(not(feature = "nats"))]
async fn nats(url: &str) -> Result<String> {
    Err(StoreUrl::parse(url)?.error("octopus-adapters was built without the `nats` feature"))
}

/// Each memcached server's `version`, within the URL's timeouts.
#[cfg(feature = "memcache")]
async fn memcached(url: &str) -> Result<String> {
    let options = crate::memcache::MemcacheOptions::from_url(url)?;
    let mut versions = Vec::new();
    for server in options.servers() {
        let deadline = options.connect_deadline() + options.deadline();
        let version = tokio::time::timeout(deadline, memcached_version(server))
            .await
            .map_err(|_| {
                octopus::Error::unavailable(
                    format!("memcache://{server}"),
                    format!("no answer within {} ms", deadline.as_millis()),
                )
            })?
            .map_err(|e| octopus::Error::unavailable(format!("memcache://{server}"), e))?;
        versions.push(format!("memcached {version} at {server}"));
    }
    Ok(versions.join(", "))
}

#[cfg(not(feature = "memcache"))]
async fn memcached(url: &str) -> Result<String> {
    Err(StoreUrl::parse(url)?.error("octopus-adapters was built without the `memcache` feature"))
}

#[cfg(feature = "memcache")]
async fn memcached_version(server: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server).await?;
    stream.write_all(b"version\r\n").await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 128];
    while !answer.ends_with(b"\r\n") && answer.len() < 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.trim()
        .strip_prefix("VERSION ")
        .map(str::to_owned)
        .ok_or_else(|| std::io::Error::other(format!("unexpected answer {:?}", text.trim())))
}

/// How long a probe may take in all, for callers that bound it.
pub const PROBE_LIMIT: Duration = Duration::from_secs(10);
