//! Store URLs and configured plans: where a config file's URLs become
//! stores (this crate knows the backends; `octopus` does not).
//!
//! | URL | store |
//! |---|---|
//! | `sqlite://path/to/file.db`, `sqlite:///abs/path.db`, `sqlite::memory:` | [`crate::sqlite::SqliteStore`] (`?synchronous=full\|normal&busy_timeout_ms=…`) |
//! | `mysql://user[:password]@host[:port]/database` | [`crate::mysql::MysqlStore`] (`?pool_size=…&deadline_ms=…`) |
//! | `memcache://host:port[,host:port…]` | [`crate::memcache::MemcacheStore`] (`?ttl_secs=…&timeout_ms=…&namespace=…`) |
//! | `memory://?capacity=…&ttl=…` | [`octopus::MemoryStore`] (`ttl` as `500ms`, `60s`, `5m` or seconds) |
//!
//! A backend whose cargo feature is off is a clear error naming the feature.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use octopus::config::Config;
use octopus::{Cache, CircuitBreaker, Error, MemoryStore, Plan, Plans, Result, Store};

fn bad(url: &str, reason: impl Into<String>) -> Error {
    Error::Config {
        key: redact(url),
        reason: reason.into(),
    }
}

/// `url` without a password, for errors.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
            match rest.rsplit_once('@') {
                Some((user, host)) => {
                    format!("{scheme}://{}@{host}", user.split(':').next().unwrap_or(""))
                }
                None => format!("{scheme}://{rest}"),
            }
        }
        None => url.to_owned(),
    }
}

fn scheme(url: &str) -> &str {
    if url.starts_with("sqlite:") {
        return "sqlite";
    }
    url.split_once("://").map_or("", |(s, _)| s)
}

/// A primary (or any store) from its URL.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    match scheme(url) {
        "sqlite" => sqlite(url).await,
        "mysql" => mysql(url),
        "memcache" => Err(bad(
            url,
            "memcached drops data at will: it can be a cache, not a primary",
        )),
        "memory" => Ok(Arc::new(memory(url)?)),
        _ => Err(bad(
            url,
            "unknown store; expected sqlite://, mysql://, memory:// or memcache://",
        )),
    }
}

/// A cache from its URL.
pub async fn open_cache(url: &str) -> Result<Arc<dyn Cache>> {
    match scheme(url) {
        "memory" => Ok(Arc::new(memory(url)?)),
        "memcache" => memcache(url).await,
        "sqlite" | "mysql" => Err(bad(
            url,
            "a database cannot be a cache; use memory:// or memcache://",
        )),
        _ => Err(bad(url, "unknown cache; expected memory:// or memcache://")),
    }
}

fn query_pairs(url: &str) -> Vec<(&str, &str)> {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

/// `500ms`, `60s`, `5m`, or a number of seconds.
fn duration(url: &str, key: &str, v: &str) -> Result<Duration> {
    let parsed = if let Some(n) = v.strip_suffix("ms") {
        n.parse().ok().map(Duration::from_millis)
    } else if let Some(n) = v.strip_suffix('s') {
        n.parse().ok().map(Duration::from_secs)
    } else if let Some(n) = v.strip_suffix('m') {
        n.parse::<u64>().ok().map(|m| Duration::from_secs(m * 60))
    } else {
        v.parse().ok().map(Duration::from_secs)
    };
    parsed.filter(|d| !d.is_zero()).ok_or_else(|| {
        bad(
            url,
            format!("`{key}` must be a positive duration like 500ms, 60s or 5m, got {v:?}"),
        )
    })
}

fn memory(url: &str) -> Result<MemoryStore> {
    let rest = url.strip_prefix("memory://").unwrap_or("");
    let name = rest.split('?').next().unwrap_or("");
    let mut builder = MemoryStore::builder().name(if name.is_empty() {
        "memory".to_owned()
    } else {
        format!("memory://{name}")
    });
    for (k, v) in query_pairs(url) {
        builder = match k {
            "capacity" => builder.capacity(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                bad(
                    url,
                    format!("`capacity` must be a positive integer, got {v:?}"),
                )
            })?),
            "ttl" => builder.ttl(duration(url, "ttl", v)?),
            _ => {
                return Err(bad(
                    url,
                    format!("unknown parameter `{k}` (expected capacity, ttl)"),
                ));
            }
        };
    }
    Ok(builder.build())
}

#[cfg(feature = "sqlite")]
async fn sqlite(url: &str) -> Result<Arc<dyn Store>> {
    use crate::sqlite::{SqliteOptions, SqliteStore, Synchronous};
    let base = url.split('?').next().unwrap_or(url);
    let mut options = SqliteOptions::default();
    for (k, v) in query_pairs(url) {
        options = match (k, v) {
            ("synchronous", "full") => options.synchronous(Synchronous::Full),
            ("synchronous", "normal") => options.synchronous(Synchronous::Normal),
            ("busy_timeout_ms", v) => {
                options.busy_timeout(Duration::from_millis(v.parse().map_err(|_| {
                    bad(
                        url,
                        format!("`busy_timeout_ms` must be a whole number, got {v:?}"),
                    )
                })?))
            }
            _ => {
                return Err(bad(
                    url,
                    format!(
                        "unknown parameter `{k}={v}` (expected synchronous=full|normal, busy_timeout_ms)"
                    ),
                ));
            }
        };
    }
    if base == "sqlite::memory:" {
        return Ok(Arc::new(SqliteStore::memory()?));
    }
    let path = base
        .strip_prefix("sqlite://")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad(url, "expected sqlite://path/to/file.db or sqlite::memory:"))?;
    Ok(Arc::new(SqliteStore::open_with(path, options).await?))
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(url: &str) -> Result<Arc<dyn Store>> {
    Err(bad(
        url,
        "octopus-adapters was built without the `sqlite` feature",
    ))
}

#[cfg(feature = "mysql")]
fn mysql(url: &str) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(crate::mysql::MysqlStore::new(url)?))
}

#[cfg(not(feature = "mysql"))]
fn mysql(url: &str) -> Result<Arc<dyn Store>> {
    Err(bad(
        url,
        "octopus-adapters was built without the `mysql` feature",
    ))
}

#[cfg(feature = "memcache")]
async fn memcache(url: &str) -> Result<Arc<dyn Cache>> {
    Ok(Arc::new(
        crate::memcache::MemcacheStore::connect(url).await?,
    ))
}

#[cfg(not(feature = "memcache"))]
async fn memcache(url: &str) -> Result<Arc<dyn Cache>> {
    Err(bad(
        url,
        "octopus-adapters was built without the `memcache` feature",
    ))
}

/// Builds every plan `config` describes. Stores are opened once per URL
/// and shared; plans over the same primary share its circuit breaker (so
/// they must agree on its settings).
pub async fn plans(config: &Config) -> Result<Plans> {
    let mut stores: HashMap<String, Arc<dyn Store>> = HashMap::new();
    let mut caches: HashMap<String, Arc<dyn Cache>> = HashMap::new();
    // Per primary URL: its writes' and reads' breakers, and the first plan
    // that named it.
    type Breakers = (Arc<CircuitBreaker>, Arc<CircuitBreaker>);
    let mut breakers: HashMap<String, (Breakers, String)> = HashMap::new();
    let mut build = async |at: &str, table: Option<&str>| -> Result<Plan> {
        let plan = match table {
            Some(t) => config.plan_for(t),
            None => config.default.clone(),
        };
        let url = plan.primary.clone().unwrap_or_default();
        let primary = match stores.get(&url) {
            Some(s) => s.clone(),
            None => {
                let s = open_store(&url).await?;
                stores.insert(url.clone(), s.clone());
                s
            }
        };
        let breaker_config = plan.breaker.clone().unwrap_or_default().resolve()?;
        let (breaker, read_breaker) = match breakers.get(&url) {
            Some((b, first)) => {
                if *b.0.config() != breaker_config {
                    return Err(Error::Config {
                        key: format!("{at}.breaker"),
                        reason: format!(
                            "differs from {first}.breaker, which shares its primary (one breaker per primary)"
                        ),
                    });
                }
                b.clone()
            }
            None => {
                let b = (
                    CircuitBreaker::new(primary.name(), breaker_config.clone())?,
                    CircuitBreaker::new(format!("{} (reads)", primary.name()), breaker_config)?,
                );
                breakers.insert(url.clone(), (b.clone(), at.to_owned()));
                b
            }
        };
        let mut builder = Plan::builder(primary)
            .shared_breaker(breaker)
            .shared_read_breaker(read_breaker);
        for c in plan.caches.unwrap_or_default() {
            let cache = match caches.get(&c.url) {
                Some(c) => c.clone(),
                None => {
                    let opened = open_cache(&c.url).await?;
                    caches.insert(c.url.clone(), opened.clone());
                    opened
                }
            };
            builder = builder.cache(cache, c.policy.into());
        }
        if let Some(ms) = plan.herd_wait_ms {
            builder = builder.herd_wait(Duration::from_millis(ms));
        }
        builder.build()
    };
    let mut plans = Plans::new(build("default", None).await?);
    for table in config.models.keys() {
        let plan = build(&format!("models.{table}"), Some(table)).await?;
        plans = plans.with_table(table.clone(), plan);
    }
    Ok(plans)
}
