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

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::breaker::BreakerOptions;
use crate::plan::CachePolicy;
use crate::{Error, Result};

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
    /// The primary's circuit breaker.
    pub breaker: Option<BreakerSettings>,
    /// How long readers wait for another reader's load of the same key.
    pub herd_wait_ms: Option<u64>,
}

/// One cache level. Its `Debug` shows the URL without its password.
#[derive(Clone, PartialEq, Deserialize)]
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

impl fmt::Debug for PlanConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PlanConfig {
            primary,
            caches,
            breaker,
            herd_wait_ms,
        } = self;
        f.debug_struct("PlanConfig")
            .field("primary", &primary.as_deref().map(Redacted))
            .field("caches", caches)
            .field("breaker", breaker)
            .field("herd_wait_ms", herd_wait_ms)
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

/// A URL whose `Debug` is [`redact_url`]'s.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(self.0), f)
    }
}

impl From<PolicyName> for CachePolicy {
    fn from(p: PolicyName) -> Self {
        match p {
            PolicyName::Invalidate => CachePolicy::Invalidate,
            PolicyName::WriteThrough => CachePolicy::WriteThrough,
        }
    }
}

/// Breaker settings; unset ones keep [`BreakerOptions::default`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// [`BreakerOptions::window`].
    pub window: Option<usize>,
    /// [`BreakerOptions::minimum_calls`].
    pub minimum_calls: Option<usize>,
    /// [`BreakerOptions::failure_rate`].
    pub failure_rate: Option<f64>,
    /// [`BreakerOptions::slow_call_duration`], in milliseconds.
    pub slow_call_ms: Option<u64>,
    /// [`BreakerOptions::slow_call_rate`].
    pub slow_call_rate: Option<f64>,
    /// [`BreakerOptions::open_wait`], in milliseconds.
    pub open_wait_ms: Option<u64>,
    /// [`BreakerOptions::half_open_calls`].
    pub half_open_calls: Option<usize>,
    /// [`BreakerOptions::half_open_max_wait`], in milliseconds.
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
    pub fn resolve(&self) -> Result<BreakerOptions> {
        let d = BreakerOptions::default();
        let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
        let config = BreakerOptions {
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
        Self::from_table(parse_toml(text, origin)?, origin, &[])
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
    /// starting with `OCTOPUS__` are looked at). An error about a value an
    /// override set names the variable, not `origin`.
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table = parse_toml(text, origin)?;
        let mut set_by = Vec::new();
        for (name, value) in vars {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                let setting = apply_override(&mut table, &name, path, &value)?;
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
            Error::Config {
                key: origin.to_owned(),
                reason,
            }
        })?;
        config.check().map_err(|e| blame_override(e, set_by))?;
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

/// The TOML value of setting `leaf` written as `value` in a variable,
/// checked for its type (so the plan's fields accept it), or why not.
fn override_value(leaf: &str, value: &str) -> std::result::Result<toml::Value, String> {
    let shown = || redact_url(value);
    Ok(match leaf {
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
                .map_err(|_| format!("expected a number, got {:?}", shown()))?,
        ),
        _ => toml::Value::Integer(
            value
                .parse::<u64>()
                .ok()
                .and_then(|n| i64::try_from(n).ok())
                .ok_or_else(|| format!("expected a whole number, got {:?}", shown()))?,
        ),
    })
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

/// `e`, naming the variable that set the setting it is about (or a part of
/// it: `models.<table>` for a bad table name).
fn blame_override(e: Error, set_by: &[(String, String)]) -> Error {
    let Error::Config { key, reason } = e else {
        return e;
    };
    let inside = |setting: &String| {
        setting == &key
            || setting
                .strip_prefix(key.as_str())
                .is_some_and(|r| r.starts_with('.'))
    };
    match set_by.iter().rev().find(|(setting, _)| inside(setting)) {
        Some((setting, variable)) => Error::Config {
            key: variable.clone(),
            reason: format!("{reason} (sets `{setting}`)"),
        },
        None => Error::Config { key, reason },
    }
}

/// Applies one `OCTOPUS__A__B=value` override to the parsed table; returns
/// the setting it sets, dotted (`default.breaker.window`).
fn apply_override(table: &mut toml::Table, name: &str, path: &str, value: &str) -> Result<String> {
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
    let parsed = override_value(&leaf, value).map_err(bad)?;
    let mut node = table;
    let mut full = plan_path;
    if rest.len() == 2 {
        full.push("breaker".into());
    }
    let setting = format!("{}.{leaf}", full.join("."));
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
    Ok(setting)
}

/// Query parameters whose value is hidden like a password: their name
/// contains `pass`, `pwd`, `secret` or `token` (any case).
pub fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|s| name.contains(s))
}

/// `url` with its password, and the value of any [secret
/// parameter](is_secret_param), replaced by `***`:
/// `mysql://app:***@db:3306/shop?pool_size=4`. For every error, log line
/// and `Debug` that shows a URL.
pub fn redact_url(url: &str) -> String {
    UrlParts::split(url).redacted()
}

/// A URL cut the way Octopus reads every store URL:
/// `scheme://[user[:password]@]location[?query]`.
///
/// The userinfo ends at the *last* `@` followed by a host (letters, digits,
/// `.-_:,[]` up to `/`, `?`, `#` or the end; else at the last `@`), so a
/// password may hold `@`, `?`, `/`, `#` and `%` as they are (or
/// percent-encoded). The user (before the first `:`) holds no `/`, `?` or
/// `#`, which tells the `@` ending a userinfo from one in a path or query
/// (`sqlite:///data/a@b.db`, `memory://?x=a@b`). After a userinfo, an `@`
/// in the path or query should be written `%40`: `h/db?x=a@b` reads as a
/// userinfo ending at `a` (hidden, so never shown, but wrong). A URL
/// without `://` (`sqlite::memory:`) has its whole text before `?` as
/// location. Parts are as written: decoding is the parser's job. `Debug`
/// shows [`redacted`](Self::redacted).
#[derive(Clone)]
pub struct UrlParts<'a> {
    url: &'a str,
    scheme: Option<&'a str>,
    authority: bool,
    userinfo: Option<Range<usize>>,
    location: Range<usize>,
}

impl<'a> UrlParts<'a> {
    /// Cuts `url`; never fails (a part that is not there is `None` or empty).
    pub fn split(url: &'a str) -> Self {
        let is_scheme = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        };
        let (scheme, start) = match url.split_once("://") {
            Some((s, _)) if is_scheme(s) => (Some(s), s.len() + 3),
            _ => (
                url.split_once(':').map(|(s, _)| s).filter(|s| is_scheme(s)),
                0,
            ),
        };
        let rest = &url[start..];
        let user_ok = |at: usize| {
            let user = rest[..at].split(':').next().unwrap_or_default();
            !user.contains(['/', '?', '#'])
        };
        let host_ok = |at: usize| {
            let after = &rest[at + 1..];
            let host = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:,[]".contains(c))
        };
        let ats = || {
            rest.match_indices('@')
                .map(|(at, _)| at)
                .filter(|&at| user_ok(at))
        };
        let at = ats()
            .rev()
            .find(|&at| host_ok(at))
            .or_else(|| ats().next_back());
        let (userinfo, from) = match at {
            Some(at) => (Some(start..start + at), start + at + 1),
            None => (None, start),
        };
        let to = url[from..].find('?').map_or(url.len(), |q| from + q);
        UrlParts {
            url,
            scheme,
            authority: start > 0,
            userinfo,
            location: from..to,
        }
    }

    /// `mysql` in `mysql://…` and `sqlite` in `sqlite::memory:`.
    pub fn scheme(&self) -> Option<&'a str> {
        self.scheme
    }

    /// Whether the scheme is followed by `//` (`sqlite::memory:` is not).
    pub fn has_authority(&self) -> bool {
        self.authority
    }

    /// The user, as written (percent-encoded).
    pub fn user(&self) -> Option<&'a str> {
        let info = &self.url[self.userinfo.clone()?];
        Some(info.split_once(':').map_or(info, |(user, _)| user))
    }

    /// The password, as written (percent-encoded).
    pub fn password(&self) -> Option<&'a str> {
        self.password_range().map(|r| &self.url[r])
    }

    fn password_range(&self) -> Option<Range<usize>> {
        let info = self.userinfo.clone()?;
        let colon = self.url[info.clone()].find(':')?;
        Some(info.start + colon + 1..info.end)
    }

    /// What follows the userinfo up to `?`: host(s), port and path, or the
    /// whole URL without `://`.
    pub fn location(&self) -> &'a str {
        &self.url[self.location.clone()]
    }

    /// What follows the first `?` after the userinfo.
    pub fn query(&self) -> Option<&'a str> {
        self.url.get(self.location.end + 1..)
    }

    /// The URL with its password and secret parameters replaced by `***`.
    /// A secret parameter is looked for in the whole URL, not only in
    /// [`query`](Self::query): if a raw `@` in its value made it look like
    /// a userinfo (`memcache://h:1?password=a@b`), it is hidden all the same.
    pub fn redacted(&self) -> String {
        let mut hidden: Vec<Range<usize>> = self.password_range().into_iter().collect();
        for (i, _) in self.url.match_indices(['?', '&']) {
            let tail = &self.url[i + 1..];
            let Some((name, value)) = tail.split_once('=') else {
                continue;
            };
            if !name.contains(['?', '&', '/', '@']) && is_secret_param(name) {
                let start = i + 1 + name.len() + 1;
                hidden.push(start..value.find('&').map_or(self.url.len(), |end| start + end));
            }
        }
        hidden.retain(|r| !r.is_empty());
        hidden.sort_by_key(|r| r.start);
        let mut out = String::with_capacity(self.url.len());
        let mut shown_to = 0;
        for r in hidden {
            if r.start >= shown_to {
                out.push_str(&self.url[shown_to..r.start]);
                out.push_str("***");
            }
            shown_to = shown_to.max(r.end);
        }
        out.push_str(&self.url[shown_to..]);
        out
    }
}

impl fmt::Debug for UrlParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UrlParts").field(&self.redacted()).finish()
    }
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

    #[test]
    fn syntax_errors_give_line_and_column_not_the_line() {
        let text = "[default]\nprimary = \"mysql://app:s3cret@db/shop\n";
        let err = Config::from_toml(text, "app.toml").unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            matches!(&err, Error::Config { key, reason } if key == "app.toml" && reason.starts_with("TOML syntax error at line 2, column ")),
            "{err:?}"
        );
    }

    #[test]
    fn errors_an_override_causes_name_its_variable() {
        let file = "[default]\nprimary = \"memory://\"\n";
        for (name, value) in [
            ("OCTOPUS__DEFAULT__BREAKER__WINDOW", "-1"),
            ("OCTOPUS__DEFAULT__BREAKER__FAILURE_RATE", "2.0"),
            ("OCTOPUS__DEFAULT__PRIMARY", ""),
            ("OCTOPUS__MODELS__NO-SUCH__PRIMARY", "memory://"),
        ] {
            let err = Config::from_toml_with_env(file, "app.toml", [(name.into(), value.into())])
                .unwrap_err();
            assert!(
                matches!(&err, Error::Config { key, .. } if key == name),
                "{name}={value}: {err:?}"
            );
        }
    }

    #[test]
    fn debug_and_override_errors_hide_passwords() {
        let vars = [(
            "OCTOPUS__DEFAULT__PRIMARY".into(),
            "mysql://app:s3cret@db/shop".into(),
        )];
        let c = Config::from_toml_with_env(FILE, "app.toml", vars).unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("mysql://app:***@db/shop"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let vars = [(
            "OCTOPUS__DEFAULT__HERD_WAIT_MS".into(),
            "mysql://app:s3cret@db/shop".into(),
        )];
        let err = Config::from_toml_with_env(FILE, "app.toml", vars).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
        let text = "[default]\nprimary = \"x\"\ncaches = \"memcache://app:s3cret@h:1\"\n";
        let err = Config::from_toml(text, "app.toml").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
    }
}
