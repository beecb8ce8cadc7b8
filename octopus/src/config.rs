//! Plans described in TOML, with environment overrides.
//!
//! ```toml
//! [default]
//! primary = "sqlite://data/app.db"
//! caches = [
//!   { url = "memory://?capacity=10000&ttl=60s" },
//!   { url = "memcache://127.0.0.1:11211,127.0.0.1:11212", policy = "write_through" },
//! ]
//! herd_wait_ms = 2000
//!
//! [default.breaker]
//! window = 20
//! failure_rate = 0.5
//! open_wait_ms = 5000
//!
//! # A model (by table name) can change any part of the default plan.
//! [models.sessions]
//! caches = [{ url = "memcache://127.0.0.1:11211" }]
//! ```
//!
//! Any value can be overridden from the environment with
//! `OCTOPUS__<PATH>` (path parts separated by two underscores, any case):
//! `OCTOPUS__DEFAULT__PRIMARY=mysql://app@db/shop`,
//! `OCTOPUS__DEFAULT__BREAKER__WINDOW=50`,
//! `OCTOPUS__MODELS__SESSIONS__PRIMARY=...`. `CACHES` takes cache URLs
//! separated by `;`. Unknown keys, in the file or the environment, are errors
//! naming them. Turning URLs into stores is `octopus-adapters`' job (it knows
//! the backends); this module only reads and checks the description.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::plan::CachePolicy;
use crate::{Error, Result};

/// The whole configuration: a default plan and per-model changes to it.
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

/// One plan.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// The primary's URL (`sqlite://path`, `mysql://user@host/db`, ...).
    pub primary: Option<String>,
    /// Caches in read order.
    pub caches: Option<Vec<CacheConfig>>,
    /// The primary's circuit breaker.
    pub breaker: Option<BreakerSettings>,
    /// How long readers wait for another reader's load of the same key.
    pub herd_wait_ms: Option<u64>,
}

/// One cache level.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The cache's URL (`memory://?capacity=…&ttl=…`, `memcache://host:port`).
    pub url: String,
    /// `invalidate` (default) or `write_through`.
    #[serde(default)]
    pub policy: PolicyName,
}

/// A [`CachePolicy`] as written in config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyName {
    /// [`CachePolicy::Invalidate`].
    #[default]
    Invalidate,
    /// [`CachePolicy::WriteThrough`].
    WriteThrough,
}

impl From<PolicyName> for CachePolicy {
    fn from(p: PolicyName) -> Self {
        match p {
            PolicyName::Invalidate => CachePolicy::Invalidate,
            PolicyName::WriteThrough => CachePolicy::WriteThrough,
        }
    }
}

/// Breaker settings; unset ones keep [`BreakerConfig::default`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// [`BreakerConfig::window`].
    pub window: Option<usize>,
    /// [`BreakerConfig::minimum_calls`].
    pub minimum_calls: Option<usize>,
    /// [`BreakerConfig::failure_rate`].
    pub failure_rate: Option<f64>,
    /// [`BreakerConfig::slow_call_duration`], in milliseconds.
    pub slow_call_ms: Option<u64>,
    /// [`BreakerConfig::slow_call_rate`].
    pub slow_call_rate: Option<f64>,
    /// [`BreakerConfig::open_wait`], in milliseconds.
    pub open_wait_ms: Option<u64>,
    /// [`BreakerConfig::half_open_calls`].
    pub half_open_calls: Option<usize>,
    /// [`BreakerConfig::half_open_max_wait`], in milliseconds.
    pub half_open_max_wait_ms: Option<u64>,
}

const BREAKER_KEYS: &[&str] = &[
    "window",
    "minimum_calls",
    "failure_rate",
    "slow_call_ms",
    "slow_call_rate",
    "open_wait_ms",
    "half_open_calls",
    "half_open_max_wait_ms",
];
const PLAN_KEYS: &[&str] = &["primary", "caches", "breaker", "herd_wait_ms"];
/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "OCTOPUS__";

impl BreakerSettings {
    /// The full breaker settings, checked.
    pub fn resolve(&self) -> Result<BreakerConfig> {
        let d = BreakerConfig::default();
        let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
        let config = BreakerConfig {
            window: self.window.unwrap_or(d.window),
            minimum_calls: self
                .minimum_calls
                .unwrap_or(d.minimum_calls.min(self.window.unwrap_or(d.window))),
            failure_rate: self.failure_rate.unwrap_or(d.failure_rate),
            slow_call_duration: ms(self.slow_call_ms, d.slow_call_duration),
            slow_call_rate: self.slow_call_rate.unwrap_or(d.slow_call_rate),
            open_wait: ms(self.open_wait_ms, d.open_wait),
            half_open_calls: self.half_open_calls.unwrap_or(d.half_open_calls),
            half_open_max_wait: ms(self.half_open_max_wait_ms, d.half_open_max_wait),
        };
        config.validate()?;
        Ok(config)
    }
}

impl PlanConfig {
    /// This plan with unset fields taken from `base`.
    pub fn over(&self, base: &PlanConfig) -> PlanConfig {
        PlanConfig {
            primary: self.primary.clone().or_else(|| base.primary.clone()),
            caches: self.caches.clone().or_else(|| base.caches.clone()),
            breaker: self.breaker.clone().or_else(|| base.breaker.clone()),
            herd_wait_ms: self.herd_wait_ms.or(base.herd_wait_ms),
        }
    }
}

impl Config {
    /// Parses TOML text; `origin` names it in errors (a file name, say).
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let table: toml::Table = toml::from_str(text).map_err(|e| Error::Config {
            key: origin.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_table(table, origin)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            key: path.display().to_string(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Reads a TOML file, then applies the process's `OCTOPUS__…`
    /// environment overrides.
    pub fn load_with_env(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            key: path.display().to_string(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::from_toml_with_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses TOML text and applies overrides from `vars` (only those
    /// starting with `OCTOPUS__` are looked at).
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| Error::Config {
            key: origin.to_owned(),
            reason: e.to_string(),
        })?;
        for (name, value) in vars {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                apply_override(&mut table, &name, path, &value)?;
            }
        }
        Self::from_table(table, origin)
    }

    fn from_table(table: toml::Table, origin: &str) -> Result<Self> {
        let config: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config {
                key: origin.to_owned(),
                reason: e.to_string().trim().to_owned(),
            })?;
        config.check()?;
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
        let mut plans = vec![("default".to_owned(), self.default.clone())];
        plans.extend(
            self.models
                .iter()
                .map(|(t, p)| (format!("models.{t}"), p.over(&self.default))),
        );
        for table in self.models.keys() {
            if !crate::schema::is_valid_identifier(table) {
                return Err(Error::Config {
                    key: format!("models.{table}"),
                    reason: "not a table name (letters, digits, `_`)".into(),
                });
            }
        }
        for (at, plan) in plans {
            if plan.primary.as_deref().is_none_or(str::is_empty) {
                return Err(Error::Config {
                    key: format!("{at}.primary"),
                    reason: "no primary store URL".into(),
                });
            }
            if let Some(b) = &plan.breaker {
                b.resolve().map_err(|e| match e {
                    Error::Config { key, reason } => Error::Config {
                        key: format!("{at}.{key}"),
                        reason,
                    },
                    other => other,
                })?;
            }
        }
        Ok(())
    }
}

/// Applies one `OCTOPUS__A__B=value` override to the parsed table.
fn apply_override(table: &mut toml::Table, name: &str, path: &str, value: &str) -> Result<()> {
    let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    let bad = |reason: String| Error::Config {
        key: name.to_owned(),
        reason,
    };
    let (plan_path, rest): (Vec<String>, &[String]) = match parts.first().map(String::as_str) {
        Some("default") => (vec!["default".into()], &parts[1..]),
        Some("models") if parts.len() >= 2 => {
            (vec!["models".into(), parts[1].clone()], &parts[2..])
        }
        _ => {
            return Err(bad(
                "expected OCTOPUS__DEFAULT__… or OCTOPUS__MODELS__<TABLE>__…".into(),
            ));
        }
    };
    let leaf = match rest {
        [field] if PLAN_KEYS.contains(&field.as_str()) && field != "breaker" => field.clone(),
        [b, field] if b == "breaker" && BREAKER_KEYS.contains(&field.as_str()) => field.clone(),
        _ => {
            return Err(bad(format!(
                "unknown setting; a plan has {} and breaker.{{{}}}",
                PLAN_KEYS.join(", "),
                BREAKER_KEYS.join(", ")
            )));
        }
    };
    let parsed = match leaf.as_str() {
        "primary" => toml::Value::String(value.to_owned()),
        "caches" => toml::Value::Array(
            value
                .split(';')
                .filter(|u| !u.trim().is_empty())
                .map(|u| {
                    let mut t = toml::Table::new();
                    t.insert("url".into(), toml::Value::String(u.trim().to_owned()));
                    toml::Value::Table(t)
                })
                .collect(),
        ),
        "failure_rate" | "slow_call_rate" => toml::Value::Float(
            value
                .parse()
                .map_err(|_| bad(format!("expected a number, got {value:?}")))?,
        ),
        _ => toml::Value::Integer(
            value
                .parse()
                .map_err(|_| bad(format!("expected a whole number, got {value:?}")))?,
        ),
    };
    let mut node = table;
    let mut full = plan_path;
    if rest.len() == 2 {
        full.push("breaker".into());
    }
    for part in full {
        let entry = node
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(bad("the file sets this path to a value, not a table".into())),
        };
    }
    node.insert(leaf, parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [default]
        primary = "sqlite://app.db"
        caches = [{ url = "memory://?capacity=10" }, { url = "memcache://h:1", policy = "write_through" }]

        [default.breaker]
        window = 8
        minimum_calls = 4

        [models.sessions]
        primary = "mysql://app@db/s"
    "#;

    #[test]
    fn models_inherit_what_they_do_not_set() {
        let c = Config::from_toml(FILE, "app.toml").unwrap();
        let s = c.plan_for("sessions");
        assert_eq!(s.primary.as_deref(), Some("mysql://app@db/s"));
        assert_eq!(s.caches.as_ref().unwrap().len(), 2);
        assert_eq!(s.caches.unwrap()[1].policy, PolicyName::WriteThrough);
        assert_eq!(
            c.plan_for("books").primary.as_deref(),
            Some("sqlite://app.db")
        );
        assert_eq!(c.default.breaker.unwrap().resolve().unwrap().window, 8);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[default]\nprimry = \"x\"", "app.toml").unwrap_err();
        assert!(
            matches!(&err, Error::Config { key, reason } if key == "app.toml" && reason.contains("primry")),
            "{err:?}"
        );
        let err = Config::from_toml(
            "[default]\nprimary = \"x\"\n[default.breaker]\nwindw = 3",
            "f",
        )
        .unwrap_err();
        assert!(err.to_string().contains("windw"), "{err}");
        let err = Config::from_toml(
            "[default]\nprimary = \"x\"\n[default.breaker]\nfailure_rate = 2.0",
            "f",
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Config { key, .. } if key == "default.breaker.failure_rate"),
            "{err:?}"
        );
        let err = Config::from_toml("[default]\n", "f").unwrap_err();
        assert!(
            matches!(&err, Error::Config { key, .. } if key == "default.primary"),
            "{err:?}"
        );
    }

    #[test]
    fn environment_overrides_win_and_unknown_ones_are_named() {
        let vars = [
            (
                "OCTOPUS__DEFAULT__PRIMARY".to_owned(),
                "mysql://root@127.0.0.1/test".to_owned(),
            ),
            (
                "OCTOPUS__DEFAULT__BREAKER__WINDOW".to_owned(),
                "30".to_owned(),
            ),
            (
                "OCTOPUS__MODELS__CARTS__CACHES".to_owned(),
                "memory://;memcache://a:1,b:2".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let c = Config::from_toml_with_env(FILE, "app.toml", vars).unwrap();
        assert_eq!(
            c.default.primary.as_deref(),
            Some("mysql://root@127.0.0.1/test")
        );
        assert_eq!(c.default.breaker.as_ref().unwrap().window, Some(30));
        assert_eq!(
            c.default.breaker.as_ref().unwrap().minimum_calls,
            Some(4),
            "file values kept"
        );
        let carts = c.plan_for("carts");
        assert_eq!(carts.caches.unwrap()[1].url, "memcache://a:1,b:2");

        let vars = [("OCTOPUS__DEFAULT__PRIMRY".to_owned(), "x".to_owned())];
        let err = Config::from_toml_with_env(FILE, "app.toml", vars).unwrap_err();
        assert!(
            matches!(&err, Error::Config { key, .. } if key == "OCTOPUS__DEFAULT__PRIMRY"),
            "{err:?}"
        );
        let vars = [(
            "OCTOPUS__DEFAULT__BREAKER__WINDOW".to_owned(),
            "many".to_owned(),
        )];
        let err = Config::from_toml_with_env(FILE, "app.toml", vars).unwrap_err();
        assert!(
            matches!(&err, Error::Config { key, reason } if key == "OCTOPUS__DEFAULT__BREAKER__WINDOW" && reason.contains("many")),
            "{err:?}"
        );
    }
}
