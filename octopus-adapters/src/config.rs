//! Store URLs and configured plans: where a config file's URLs become
//! stores (this crate knows the backends; `octopus` does not).
//!
//! | URL | store |
//! |---|---|
//! | `sqlite://path/to/file.db`, `sqlite:///abs/path.db`, `sqlite::memory:` | [`crate::sqlite::SqliteStore`] (`?synchronous=full\|normal&busy_timeout_ms=…`) |
//! | `mysql://user[:password]@host[:port]/database` | [`crate::mysql::MysqlStore`] (`?pool_size=…&deadline_ms=…`) |
//! | `postgres://user[:password]@host[:port]/database` (or `postgresql://`) | [`crate::postgres::PostgresStore`] (`?pool_size=…&deadline_ms=…&schema=…`) |
//! | `memcache://host:port[,host:port…]` | [`crate::memcache::MemcacheStore`] (`?ttl_secs=…&timeout_ms=…&namespace=…`) |
//! | `memory://?capacity=…&ttl=…&stale_for=…` | [`octopus::MemoryStore`] (durations as `500ms`, `60s`, `5m` or seconds; `stale_for`: see [`octopus::MemoryOptions::stale_for`]) |
//! | `file://path/to/dir` (a plan's `fallback`) | [`octopus::journal::Journal`] (`?durability=fsync\|none\|<duration>&segment_bytes=…&replay_batch=…`) |
//! | `nats://host:port?stream=…` (a plan's `fallback`) | a JetStream stream a fleet shares (feature `nats`) |
//!
//! Every URL is read by one parser: the password may hold `?`, `@`, `%`,
//! `/` and `#` as they are or percent-encoded (the userinfo ends at the last
//! `@` before the host; see [`octopus::config::UrlParts`]). A parameter
//! given twice, or one the scheme does not take, is an error naming it and
//! the scheme; only MySQL has a login, the other schemes refuse a
//! `user:password@`. Errors name the URL through
//! [`octopus::config::redact_url`], so a password never shows. A backend
//! whose cargo feature is off is a clear error naming the feature.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use octopus::config::{Config, Fallbacks};
use octopus::{
    BreakerOptions, Cache, CircuitBreaker, Error, Fallback, FallbackChain, MemoryOptions,
    MemoryStore, Plan, Plans, Result, Store,
};

pub use crate::fallback::{file_journal, open_fallback};
use crate::url::StoreUrl;

/// A primary (or any store) from its URL.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    let url = StoreUrl::parse(url)?;
    match url.scheme() {
        "sqlite" => sqlite(&url).await,
        "mysql" => mysql(&url),
        "postgres" | "postgresql" => postgres(&url),
        "memcache" => {
            Err(url.error("memcached drops data at will: it can be a cache, not a primary"))
        }
        "memory" => Ok(Arc::new(memory(&url)?)),
        _ => Err(url.error(
            "unknown store; expected sqlite://, mysql://, postgres://, memory:// or memcache://",
        )),
    }
}

/// A cache from its URL.
pub async fn open_cache(url: &str) -> Result<Arc<dyn Cache>> {
    let url = StoreUrl::parse(url)?;
    match url.scheme() {
        "memory" => Ok(Arc::new(memory(&url)?)),
        "memcache" => memcache(&url).await,
        "sqlite" | "mysql" | "postgres" | "postgresql" => {
            Err(url.error("a database cannot be a cache; use memory:// or memcache://"))
        }
        _ => Err(url.error("unknown cache; expected memory:// or memcache://")),
    }
}

/// `500ms`, `60s`, `5m`, or a number of seconds.
fn duration(url: &StoreUrl<'_>, param: &crate::url::Param<'_>) -> Result<Duration> {
    let v = param.value.as_str();
    let parsed = octopus::config::parse_duration(v);
    parsed.filter(|d| !d.is_zero()).ok_or_else(|| {
        url.error(format!(
            "`{}` must be a positive duration like 500ms, 60s or 5m, got {v:?}",
            param.name
        ))
    })
}

fn memory(url: &StoreUrl<'_>) -> Result<MemoryStore> {
    if !url.has_authority() {
        return Err(url.error("a memory URL starts with memory://"));
    }
    url.refuse_userinfo("a memory store has no login")?;
    let name = url.location();
    let mut options = MemoryOptions::new().name(if name.is_empty() {
        "memory".to_owned()
    } else {
        format!("memory://{name}")
    });
    for param in url.params() {
        options = match param.name.as_str() {
            "capacity" => {
                options.capacity(usize::try_from(url.positive(param)?).unwrap_or(usize::MAX))
            }
            "ttl" => options.ttl(duration(url, param)?),
            "stale_for" => options.stale_for(duration(url, param)?),
            _ => return Err(url.unknown(param, "capacity, ttl, stale_for")),
        };
    }
    Ok(MemoryStore::with_options(options))
}

#[cfg(feature = "sqlite")]
async fn sqlite(url: &StoreUrl<'_>) -> Result<Arc<dyn Store>> {
    use crate::sqlite::{SqliteOptions, SqliteStore};
    Ok(match SqliteOptions::from_url(url)? {
        (None, _) => Arc::new(SqliteStore::memory()?),
        (Some(path), options) => Arc::new(SqliteStore::open_with(path, options).await?),
    })
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(url: &StoreUrl<'_>) -> Result<Arc<dyn Store>> {
    Err(url.error("octopus-adapters was built without the `sqlite` feature"))
}

#[cfg(feature = "mysql")]
fn mysql(url: &StoreUrl<'_>) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(crate::mysql::MysqlStore::new(url.as_written())?))
}

#[cfg(not(feature = "mysql"))]
fn mysql(url: &StoreUrl<'_>) -> Result<Arc<dyn Store>> {
    Err(url.error("octopus-adapters was built without the `mysql` feature"))
}

#[cfg(feature = "postgres")]
fn postgres(url: &StoreUrl<'_>) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(crate::postgres::PostgresStore::new(
        url.as_written(),
    )?))
}

#[cfg(not(feature = "postgres"))]
fn postgres(url: &StoreUrl<'_>) -> Result<Arc<dyn Store>> {
    Err(url.error("octopus-adapters was built without the `postgres` feature"))
}

#[cfg(feature = "memcache")]
async fn memcache(url: &StoreUrl<'_>) -> Result<Arc<dyn Cache>> {
    Ok(Arc::new(
        crate::memcache::MemcacheStore::connect(url.as_written()).await?,
    ))
}

#[cfg(not(feature = "memcache"))]
async fn memcache(url: &StoreUrl<'_>) -> Result<Arc<dyn Cache>> {
    Err(url.error("octopus-adapters was built without the `memcache` feature"))
}

/// Builds every plan `config` describes. Stores, caches and journals are
/// opened once per URL and shared; plans over the same primary share its
/// circuit breakers (so they must agree on its settings), and plans naming
/// one journal must share their primary.
///
/// On an error, the journals opened so far are closed before it returns, so
/// their directory locks are free for the corrected config.
pub async fn plans(config: &Config) -> Result<Plans> {
    let mut opened = Opened::default();
    let built = opened.plans(config).await;
    if built.is_err() {
        for (journal, _, _) in opened.journals.values() {
            if let Err(e) = journal.close().await {
                tracing::warn!(error = %e, "closing a journal of a config that failed");
            }
        }
    }
    built
}

/// A plan whose journal a fleet shares (`nats://`) runs on several
/// servers; without a `fleet_lease`, an in-process cache in it sees no
/// other server's writes, so it can serve a row another server changed
/// until the row's TTL. Said once per plan, at startup.
fn warn_of_local_caches_in_a_fleet(
    at: &str, fallback: &str, caches: Option<&[octopus::config::CacheConfig]>,
) {
    if !fallback.starts_with("nats:") {
        return;
    }
    for cache in caches.unwrap_or_default() {
        if cache.url.starts_with("memory:") {
            tracing::warn!(
                plan = at,
                "an in-process cache (memory://) in a plan whose journal a fleet shares, without \
                 a fleet_lease, sees no other server's writes: it may serve a row another server \
                 changed until the row's TTL; set fleet_lease (say \"20ms\") or cache in \
                 memcached only"
            );
        }
    }
}

/// A primary's writes' and reads' breakers.
type Breakers = (Arc<CircuitBreaker>, Arc<CircuitBreaker>);

/// What [`plans`] has opened so far, by URL, with the setting that first
/// named it (for errors).
#[derive(Default)]
struct Opened {
    stores: HashMap<String, Arc<dyn Store>>,
    caches: HashMap<String, Arc<dyn Cache>>,
    breakers: HashMap<String, (Breakers, String)>,
    /// Per journal URL: the journal, its primary's URL, who named it first.
    journals: HashMap<String, (Arc<dyn Fallback>, String, String)>,
}

impl Opened {
    /// Every plan of `config`.
    async fn plans(&mut self, config: &Config) -> Result<Plans> {
        let mut plans = Plans::new(self.plan(config, "default", None).await?);
        for table in config.models.keys() {
            let plan = self
                .plan(config, &format!("models.{table}"), Some(table))
                .await?;
            plans = plans.with_table(table.clone(), plan);
        }
        Ok(plans)
    }

    /// The plan of `table` (the default plan for `None`); `at` names it in
    /// errors.
    async fn plan(&mut self, config: &Config, at: &str, table: Option<&str>) -> Result<Plan> {
        let plan = match table {
            Some(t) => config.plan_for(t),
            None => config.default.clone(),
        };
        let url = plan.primary.clone().unwrap_or_default();
        let primary = match self.stores.get(&url) {
            Some(s) => s.clone(),
            None => {
                let s = open_store(&url).await?;
                self.stores.insert(url.clone(), s.clone());
                s
            }
        };
        let (breaker, read_breaker) =
            self.breakers(at, &url, &primary, plan.breaker.clone().unwrap_or_default())?;
        let mut builder = Plan::builder(primary)
            .shared_breaker(breaker)
            .shared_read_breaker(read_breaker);
        for c in plan.caches.clone().unwrap_or_default() {
            let cache = match self.caches.get(&c.url) {
                Some(c) => c.clone(),
                None => {
                    let opened = open_cache(&c.url).await?;
                    self.caches.insert(c.url.clone(), opened.clone());
                    opened
                }
            };
            builder = builder.cache(cache, c.policy);
        }
        if let Some(wait) = plan.herd_wait {
            builder = builder.herd_wait(wait);
        }
        if let Some(on) = plan.stale_if_error {
            builder = builder.stale_if_error(on);
        }
        if let Some(lease) = plan.fleet_lease {
            builder = builder.fleet_lease(lease);
        }
        if let Some(fallbacks) = plan
            .fallback
            .as_ref()
            .filter(|_| plan.fleet_lease.is_none())
        {
            for journal in fallbacks.urls() {
                warn_of_local_caches_in_a_fleet(at, journal, plan.caches.as_deref());
            }
        }
        if let Some(fallbacks) = &plan.fallback {
            builder = builder.fallback(self.fallback(at, fallbacks, &url).await?);
        }
        builder.build()
    }

    /// The breakers of the primary at `url`: new, or those of the plan that
    /// named it first, whose settings must be `options`.
    fn breakers(
        &mut self, at: &str, url: &str, primary: &Arc<dyn Store>, options: BreakerOptions,
    ) -> Result<Breakers> {
        options.validate()?;
        if let Some((b, first)) = self.breakers.get(url) {
            if *b.0.config() != options {
                return Err(Error::config(
                    format!("{at}.breaker"),
                    format!(
                        "differs from {first}.breaker, which shares its primary (one breaker per primary)"
                    ),
                ));
            }
            return Ok(b.clone());
        }
        let b = (
            CircuitBreaker::new(primary.name(), options.clone())?,
            CircuitBreaker::new(format!("{} (reads)", primary.name()), options)?,
        );
        self.breakers
            .insert(url.to_owned(), (b.clone(), at.to_owned()));
        Ok(b)
    }

    /// The plan's fallback: its one journal, or a chain of them (opened
    /// once per list of URLs, each link once per URL).
    async fn fallback(
        &mut self, at: &str, fallbacks: &Fallbacks, primary: &str,
    ) -> Result<Arc<dyn Fallback>> {
        let [url] = fallbacks.urls() else {
            let chain_id = fallbacks.urls().join(" ; ");
            if let Some((chain, _, _)) = self.journals.get(&chain_id) {
                return Ok(chain.clone());
            }
            let mut links = Vec::new();
            for url in fallbacks.urls() {
                links.push(self.journal(at, url, primary).await?);
            }
            let chain: Arc<dyn Fallback> = Arc::new(FallbackChain::new(links)?);
            self.journals
                .insert(chain_id, (chain.clone(), primary.to_owned(), at.to_owned()));
            return Ok(chain);
        };
        self.journal(at, url, primary).await
    }

    /// The journal at `url`, opened once, for the primary at `primary`.
    async fn journal(&mut self, at: &str, url: &str, primary: &str) -> Result<Arc<dyn Fallback>> {
        if let Some((journal, its_primary, first)) = self.journals.get(url) {
            if its_primary != primary {
                return Err(Error::config(
                    format!("{at}.fallback"),
                    format!(
                        "names the journal of {first}, whose primary differs (a journal replays into one primary)"
                    ),
                ));
            }
            return Ok(journal.clone());
        }
        let journal = open_fallback(url).await?;
        self.journals.insert(
            url.to_owned(),
            (journal.clone(), primary.to_owned(), at.to_owned()),
        );
        Ok(journal)
    }
}
