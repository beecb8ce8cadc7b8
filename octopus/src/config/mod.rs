//! Plans described in TOML, with environment overrides.
//!
//! ```toml
//! [default]
//! primary = "sqlite://data/app.db"
//! caches = [
//!   { url = "memory://?capacity=10000&ttl=60s" },
//!   { url = "memcache://127.0.0.1:11211,127.0.0.1:11212", policy = "write_through" },
//! ]
//! herd_wait = "2s"
//! # While the primary is down, serve rows the in-process cache keeps past
//! # their TTL (with `stale_for=10m` in its URL, say): off by default.
//! stale_if_error = false
//! # Writes the primary cannot take are journaled here and replayed later
//! # (or a chain, tried in order: ["nats://…?stream=octopus", "file://…"]).
//! fallback = "file://data/journal"
//!
//! [default.breaker]
//! window = 20
//! failure_rate = 0.5
//! open_wait = "5s"
//!
//! # A model (by table name) can change any part of the default plan.
//! [models.sessions]
//! caches = [{ url = "memcache://127.0.0.1:11211" }]
//! ```
//!
//! The keys are the fields of [`PlanConfig`], [`CacheConfig`] and
//! [`BreakerOptions`], by the same names; durations are written `"500ms"`,
//! `"5s"`, `"5m"` or `"1h"`.
//!
//! Any value can be overridden from the environment with
//! `OCTOPUS__<PATH>` (path parts separated by two underscores, any case):
//! `OCTOPUS__DEFAULT__PRIMARY=mysql://app@db/shop`,
//! `OCTOPUS__DEFAULT__BREAKER__WINDOW=50`,
//! `OCTOPUS__MODELS__SESSIONS__PRIMARY=...`. `CACHES` takes cache URLs
//! separated by `;`, and so does `FALLBACK` for a chain. Unknown keys, in the file or the environment, are errors
//! naming them; an error an override causes names its variable. Turning URLs
//! into stores is `octopus-adapters`' job (it knows the backends); this module
//! only reads and checks the description.
//!
//! # Passwords
//!
//! A URL may carry a password (`mysql://app:s3cret@db/shop`). It never shows:
//! `Debug` of these types, and every error, print URLs through
//! [`redact_url`], and a TOML syntax error gives its line and column, never
//! the line itself. [`UrlParts`] is where Octopus cuts a URL, for this module
//! and for the backends' parsers alike, so what is hidden is exactly what is
//! parsed as the password.

mod duration;
mod env;
mod fallbacks;
mod url;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::breaker::BreakerOptions;
use crate::plan::CachePolicy;
use crate::{Error, Result};

pub use duration::parse_duration;
pub(crate) use duration::{deserialize as deserialize_duration, deserialize_option};
pub use env::ENV_PREFIX;
pub use fallbacks::Fallbacks;
use url::Redacted;
pub use url::{UrlParts, is_secret_param, redact_url};

/// The whole configuration: a default plan and per-model changes to it.
/// Its `Debug` shows URLs without their passwords.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The plan every model uses unless it has its own.
    #[serde(default)]
    pub default: PlanConfig,
    /// Per-model plans, by table name; unset fields come from `default`.
    #[serde(default)]
    pub models: BTreeMap<String, PlanConfig>,
}

/// One plan. Its `Debug` shows URLs without their passwords.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// The primary's URL (`sqlite://path`, `mysql://user@host/db`, ...).
    pub primary: Option<String>,
    /// Caches in read order.
    pub caches: Option<Vec<CacheConfig>>,
    /// The primary's circuit breaker; unset settings keep
    /// [`BreakerOptions::default`]'s.
    pub breaker: Option<BreakerOptions>,
    /// How long readers wait for another reader's load of the same key.
    #[serde(default, deserialize_with = "deserialize_option")]
    pub herd_wait: Option<Duration>,
    /// Where writes go that the primary cannot take: a journal's URL
    /// (`file://path/to/dir?durability=fsync`, `nats://host:port?stream=…`),
    /// or a chain of them tried in order ([`Fallbacks`]). Unset, such
    /// writes fail with the primary's error. Plans naming one journal must
    /// share their primary (a journal replays into one primary).
    pub fallback: Option<Fallbacks>,
    /// Serve a row a cache level holds past its time to live while the
    /// primary is unavailable ([`crate::PlanBuilder::stale_if_error`];
    /// the in-process cache keeps such rows with `?stale_for=…`). Default
    /// off.
    pub stale_if_error: Option<bool>,
    /// The plan runs on several servers: in-process cache rows live at
    /// most this long and each write waits it out before it is
    /// acknowledged, so an in-process cache does not serve a row another
    /// server overwrote ([`crate::PlanBuilder::fleet_lease`], which says
    /// what it does not cover).
    #[serde(default, deserialize_with = "deserialize_option")]
    pub fleet_lease: Option<Duration>,
}

/// One cache level. Its `Debug` shows the URL without its password.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The cache's URL (`memory://?capacity=…&ttl=…`, `memcache://host:port`).
    pub url: String,
    /// `invalidate` (default) or `write_through`.
    #[serde(default)]
    pub policy: CachePolicy,
}

impl fmt::Debug for PlanConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PlanConfig {
            primary,
            caches,
            breaker,
            herd_wait,
            fallback,
            stale_if_error,
            fleet_lease,
        } = self;
        f.debug_struct("PlanConfig")
            .field("primary", &primary.as_deref().map(Redacted))
            .field("caches", caches)
            .field("breaker", breaker)
            .field("herd_wait", herd_wait)
            .field("fallback", fallback)
            .field("stale_if_error", stale_if_error)
            .field("fleet_lease", fleet_lease)
            .finish()
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let CacheConfig { url, policy } = self;
        f.debug_struct("CacheConfig")
            .field("url", &Redacted(url))
            .field("policy", policy)
            .finish()
    }
}

impl PlanConfig {
    /// This plan with unset fields taken from `base`.
    pub fn over(&self, base: &PlanConfig) -> PlanConfig {
        PlanConfig {
            primary: self.primary.clone().or_else(|| base.primary.clone()),
            caches: self.caches.clone().or_else(|| base.caches.clone()),
            breaker: self.breaker.clone().or_else(|| base.breaker.clone()),
            herd_wait: self.herd_wait.or(base.herd_wait),
            fallback: self.fallback.clone().or_else(|| base.fallback.clone()),
            stale_if_error: self.stale_if_error.or(base.stale_if_error),
            fleet_lease: self.fleet_lease.or(base.fleet_lease),
        }
    }
}

impl Config {
    /// Parses TOML text; `origin` names it in errors (a file name, say).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        Self::from_table(parse_toml(text, origin)?, origin, &[])
    }

    /// Reads and parses a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let (text, origin) = read(path.as_ref())?;
        Self::from_toml(&text, &origin)
    }

    /// Reads a TOML file, then applies the process's `OCTOPUS__…`
    /// environment overrides.
    pub fn load_with_env(path: impl AsRef<Path>) -> Result<Self> {
        let (text, origin) = read(path.as_ref())?;
        Self::from_toml_with_env(&text, &origin, std::env::vars())
    }

    /// Parses TOML text and applies overrides from `vars` (only those
    /// starting with `OCTOPUS__` are looked at). An error about a value an
    /// override set names the variable, not `origin`.
    pub fn from_toml_with_env(
        text: &str, origin: &str, vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table = parse_toml(text, origin)?;
        let mut set_by = Vec::new();
        for (name, value) in vars {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                let setting = env::apply_override(&mut table, &name, path, &value)?;
                set_by.push((setting, name));
            }
        }
        Self::from_table(table, origin, &set_by)
    }

    /// `set_by` pairs a setting (`default.breaker.window`) with the
    /// variable that set it.
    fn from_table(table: toml::Table, origin: &str, set_by: &[(String, String)]) -> Result<Self> {
        let config: Config = table.clone().try_into().map_err(|e: toml::de::Error| {
            // serde quotes a value of the wrong type, URL and all.
            let reason = hide_urls(e.to_string().trim().to_owned(), &toml::Value::Table(table));
            Error::config(origin, reason)
        })?;
        config.check().map_err(|e| env::blame_override(e, set_by))?;
        Ok(config)
    }

    /// The plan for `table`: its own settings over the default ones.
    pub fn plan_for(&self, table: &str) -> PlanConfig {
        match self.models.get(table) {
            Some(own) => own.over(&self.default),
            None => self.default.clone(),
        }
    }

    fn check(&self) -> Result<()> {
        for table in self.models.keys() {
            if !crate::schema::is_valid_identifier(table) {
                return Err(Error::config(
                    format!("models.{table}"),
                    "not a table name (letters, digits, `_`)",
                ));
            }
        }
        let own = self.models.iter().map(|(t, p)| (format!("models.{t}"), p));
        for (at, plan) in std::iter::once(("default".to_owned(), &self.default)).chain(own) {
            let plan = plan.over(&self.default);
            if plan.primary.as_deref().is_none_or(str::is_empty) {
                return Err(Error::config(
                    format!("{at}.primary"),
                    "no primary store URL",
                ));
            }
            if let Some(b) = &plan.breaker {
                b.validate().map_err(|e| match e {
                    Error::Config { key, reason } => Error::config(format!("{at}.{key}"), reason),
                    other => other,
                })?;
            }
        }
        Ok(())
    }
}

/// A file's text, and its name for errors.
fn read(path: &Path) -> Result<(String, String)> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(&origin, format!("cannot read: {e}")))?;
    Ok((text, origin))
}

/// Parses TOML text into a table. A syntax error gives the line, column and
/// the parser's message, never the line itself: toml's `Display` quotes it,
/// and it may hold a password.
fn parse_toml(text: &str, origin: &str) -> Result<toml::Table> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let reason = match e.span() {
            Some(span) => {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!(
                    "TOML syntax error at line {line}, column {column}: {}",
                    e.message()
                )
            }
            None => format!("TOML syntax error: {}", e.message()),
        };
        Error::Config {
            key: origin.to_owned(),
            reason,
        }
    })
}

/// `reason` with every URL of `value` in it redacted.
fn hide_urls(reason: String, value: &toml::Value) -> String {
    match value {
        toml::Value::String(url) => {
            let shown = redact_url(url);
            if shown == *url {
                return reason;
            }
            let quoted = |s: &str| format!("{s:?}");
            reason
                .replace(&quoted(url), &quoted(&shown))
                .replace(url.as_str(), &shown)
        }
        toml::Value::Array(values) => values.iter().fold(reason, hide_urls),
        toml::Value::Table(table) => table.values().fold(reason, hide_urls),
        _ => reason,
    }
}

#[cfg(test)]
mod tests;
