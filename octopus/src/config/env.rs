//! `OCTOPUS__…` environment overrides of a parsed config file.

use crate::{Error, Result};

use super::{Config, hide_urls};

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "OCTOPUS__";

/// Applies one `OCTOPUS__A__B=value` override to the parsed table; returns
/// the setting it sets, dotted (`default.breaker.window`). The setting's
/// name and the value's type are checked by deserializing a config that
/// holds only this setting, so the plan's types are the one list of what
/// may be set.
pub(super) fn apply_override(
    table: &mut toml::Table, name: &str, path: &str, value: &str,
) -> Result<String> {
    let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    let bad = |reason: String| Error::config(name, reason);
    let plan_len = match parts.first().map(String::as_str) {
        Some("default") => 1,
        Some("models") if parts.len() >= 2 => 2,
        _ => {
            return Err(bad(
                "expected OCTOPUS__DEFAULT__… or OCTOPUS__MODELS__<TABLE>__…".into(),
            ));
        }
    };
    let Some((leaf, tables)) = parts.split_last().filter(|_| parts.len() > plan_len) else {
        return Err(bad("names a plan, not a setting of it".into()));
    };
    let parsed = override_value(leaf, value);
    let mut alone = toml::Table::new();
    set(&mut alone, tables, leaf, parsed.clone()).map_err(bad)?;
    let shown = toml::Value::Table(alone.clone());
    if let Err(e) = alone.try_into::<Config>() {
        return Err(bad(hide_urls(e.to_string().trim().to_owned(), &shown)));
    }
    set(table, tables, leaf, parsed).map_err(bad)?;
    Ok(parts.join("."))
}

/// Sets `tables.leaf = value` in `table`, making the tables on the way.
fn set(
    mut table: &mut toml::Table, tables: &[String], leaf: &str, value: toml::Value,
) -> std::result::Result<(), String> {
    for part in tables {
        let entry = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("the file sets `{part}` to a value, not a table")),
        };
    }
    table.insert(leaf.to_owned(), value);
    Ok(())
}

/// The TOML value a variable's text stands for: `caches` takes cache URLs
/// separated by `;`, `fallback` a chain of URLs so separated; otherwise a
/// whole number, a number, or text.
fn override_value(leaf: &str, value: &str) -> toml::Value {
    if leaf == "caches" {
        return toml::Value::Array(
            value
                .split(';')
                .filter(|u| !u.trim().is_empty())
                .map(|u| {
                    let mut t = toml::Table::new();
                    t.insert("url".into(), toml::Value::String(u.trim().to_owned()));
                    toml::Value::Table(t)
                })
                .collect(),
        );
    }
    if leaf == "fallback" && value.contains(';') {
        return toml::Value::Array(
            value
                .split(';')
                .filter(|u| !u.trim().is_empty())
                .map(|u| toml::Value::String(u.trim().to_owned()))
                .collect(),
        );
    }
    if let Ok(n) = value.parse::<i64>() {
        toml::Value::Integer(n)
    } else if let Ok(x) = value.parse::<f64>()
        && x.is_finite()
    {
        toml::Value::Float(x)
    } else {
        toml::Value::String(value.to_owned())
    }
}

/// `e`, naming the variable that set the setting it is about (or a part of
/// it: `models.<table>` for a bad table name).
pub(super) fn blame_override(e: Error, set_by: &[(String, String)]) -> Error {
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
