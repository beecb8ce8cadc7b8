//! [`MemcacheOptions`]: a memcached store's settings, from a URL or code.

use std::time::Duration;

use octopus::{Error, Result};

use super::DEFAULT_ITEM_LIMIT;

/// Settings of a [`MemcacheStore`](super::MemcacheStore), from a URL or built in code.
#[derive(Debug, Clone)]
pub struct MemcacheOptions {
    pub(super) servers: Vec<String>,
    pub(super) namespace: String,
    pub(super) ttl: Duration,
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) max_item_bytes: usize,
}

impl MemcacheOptions {
    /// Options for `servers` (`host:port` each) with defaults: TTL 300 s,
    /// operation timeout 500 ms, connect timeout 500 ms, 1 MiB items.
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        MemcacheOptions {
            servers: servers.into_iter().map(Into::into).collect(),
            namespace: "octopus".into(),
            ttl: Duration::from_secs(300),
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            max_item_bytes: DEFAULT_ITEM_LIMIT,
        }
    }

    /// Parses `memcache://host:port[,host:port...]` with optional
    /// `namespace`, `ttl_secs`, `timeout_ms`, `connect_timeout_ms` and
    /// `max_item_bytes` query parameters. Unknown parameters, and a user or
    /// password (the meta protocol has no login), are errors naming them.
    pub fn from_url(url: &str) -> Result<Self> {
        let url = crate::url::StoreUrl::parse(url)?;
        if url.scheme() != "memcache" || !url.has_authority() {
            return Err(url.error("a memcache URL starts with memcache://"));
        }
        url.refuse_userinfo("memcached's meta protocol has no login")?;
        let servers: Vec<String> = url
            .location()
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if servers.is_empty() {
            return Err(url.error("no server in the URL (memcache://host:port)"));
        }
        for s in &servers {
            let port_ok = s
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(url.error(format!("server {s:?} is not host:port")));
            }
        }
        let mut options = MemcacheOptions::new(servers);
        for param in url.params() {
            match param.name.as_str() {
                "ttl_secs" => options.ttl = Duration::from_secs(url.positive(param)?),
                "timeout_ms" => options.timeout = Duration::from_millis(url.positive(param)?),
                "connect_timeout_ms" => {
                    options.connect_timeout = Duration::from_millis(url.positive(param)?)
                }
                "max_item_bytes" => {
                    options.max_item_bytes =
                        usize::try_from(url.positive(param)?).unwrap_or(usize::MAX)
                }
                "namespace" => options = options.namespace(&param.value)?,
                _ => {
                    return Err(url.unknown(
                        param,
                        "namespace, ttl_secs, timeout_ms, connect_timeout_ms, max_item_bytes",
                    ));
                }
            }
        }
        Ok(options)
    }

    /// The first part of every key (default `octopus`), so several
    /// applications or environments can share servers: 1 to 64 ASCII
    /// letters, digits, `_` or `-`.
    pub fn namespace(mut self, namespace: &str) -> Result<Self> {
        let ok = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(Error::Config {
                key: "namespace".into(),
                reason: format!("{namespace:?} must be 1 to 64 ASCII letters, digits, `_` or `-`"),
            });
        }
        self.namespace = namespace.to_owned();
        Ok(self)
    }

    /// Time to live of every item written (at least one second).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Deadline of one exchange with a server.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Deadline for dialing a server.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// The servers, `host:port` each.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The deadline of one exchange with a server.
    pub fn deadline(&self) -> Duration {
        self.timeout
    }

    /// The deadline for dialing a server.
    pub fn connect_deadline(&self) -> Duration {
        self.connect_timeout
    }

    /// The server's item size limit (memcached's `-I`).
    pub fn max_item_bytes(mut self, n: usize) -> Self {
        self.max_item_bytes = n;
        self
    }
}
