//! TOML configuration with `OCTOPUS__…` environment overrides: must never
//! panic.
//!
//! Input: UTF-8 text. Before the first NUL byte: the TOML file. After it:
//! `NAME=VALUE` lines, each an override (`OCTOPUS__` is prefixed to names
//! that lack it, so most lines reach the override code).
#![no_main]

use libfuzzer_sys::fuzz_target;
use octopus::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = text.split_once('\0').unwrap_or((text, ""));
    let _ = Config::from_toml(toml, "fuzz");
    let vars: Vec<(String, String)> = env
        .split('\n')
        .filter(|l| !l.is_empty())
        .take(16)
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            let name = if name.starts_with("OCTOPUS__") {
                name.to_owned()
            } else {
                format!("OCTOPUS__{name}")
            };
            (name, value.to_owned())
        })
        .collect();
    let _ = Config::from_toml_with_env(toml, "fuzz", vars);
});
