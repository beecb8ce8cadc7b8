//! `octopus doctor`: every URL the config names, probed in its role.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use octopus::config::{Config, redact_url};
use octopus_adapters::probe::{PROBE_LIMIT, Role, probe};
use serde_json::json;

/// One URL to check, and the plans that name it.
struct Check {
    role: Role,
    url: String,
    plans: Vec<String>,
}

/// What a check found.
struct Found {
    check: Check,
    answer: Result<String, String>,
    millis: u128,
}

/// The URLs of every plan of `config`, each once per role, in the order
/// the plans name them.
fn checks(config: &Config) -> Vec<Check> {
    let mut plans = vec![("default".to_owned(), config.default.clone())];
    for table in config.models.keys() {
        plans.push((format!("models.{table}"), config.plan_for(table)));
    }
    let mut out: Vec<Check> = Vec::new();
    for (name, plan) in plans {
        let urls = plan
            .primary
            .iter()
            .map(|u| (Role::Primary, u.clone()))
            .chain(
                plan.caches
                    .iter()
                    .flatten()
                    .map(|c| (Role::Cache, c.url.clone())),
            )
            .chain(
                plan.fallback
                    .iter()
                    .flat_map(|f| f.urls())
                    .map(|u| (Role::Fallback, u.clone())),
            );
        for (role, url) in urls {
            match out.iter_mut().find(|c| c.role == role && c.url == url) {
                Some(c) => c.plans.push(name.clone()),
                None => out.push(Check {
                    role,
                    url,
                    plans: vec![name.clone()],
                }),
            }
        }
    }
    out
}

async fn probe_one(check: Check) -> Found {
    let started = Instant::now();
    let answer = match tokio::time::timeout(PROBE_LIMIT, probe(&check.url, check.role)).await {
        Ok(Ok(what)) => Ok(what),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", PROBE_LIMIT.as_secs())),
    };
    Found {
        check,
        answer,
        millis: started.elapsed().as_millis(),
    }
}

/// Runs the checks of the config at `path`; prints lines, or JSON.
pub async fn run(path: &Path, json: bool) -> ExitCode {
    let config = match Config::load_with_env(path) {
        Ok(c) => c,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    json!({ "ok": false, "config": path, "error": e.to_string() })
                );
            } else {
                eprintln!("octopus doctor: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let probes = checks(&config).into_iter().map(probe_one);
    let found: Vec<Found> = futures_join(probes).await;
    let failed = found.iter().filter(|f| f.answer.is_err()).count();
    if json {
        let checks: Vec<_> = found
            .iter()
            .map(|f| {
                json!({
                    "role": f.check.role.name(),
                    "url": redact_url(&f.check.url),
                    "plans": f.check.plans,
                    "ok": f.answer.is_ok(),
                    "answer": f.answer.as_ref().ok(),
                    "error": f.answer.as_ref().err(),
                    "millis": f.millis,
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "ok": failed == 0, "config": path, "checks": checks })
        );
    } else {
        for f in &found {
            let (mark, what) = match &f.answer {
                Ok(what) => ("ok  ", what.as_str()),
                Err(why) => ("FAIL", why.as_str()),
            };
            println!(
                "{mark} {:<8} {}  {what} ({} ms; {})",
                f.check.role.name(),
                redact_url(&f.check.url),
                f.millis,
                f.check.plans.join(", ")
            );
        }
        if failed > 0 {
            let names: Vec<String> = found
                .iter()
                .filter(|f| f.answer.is_err())
                .map(|f| format!("{} {}", f.check.role.name(), redact_url(&f.check.url)))
                .collect();
            eprintln!(
                "octopus doctor: {failed} of {} checks failed: {}",
                found.len(),
                names.join("; ")
            );
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs every probe at once, and returns their results in order.
async fn futures_join<F: Future<Output = Found> + Send + 'static>(
    probes: impl Iterator<Item = F>,
) -> Vec<Found> {
    let handles: Vec<_> = probes.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(found) => out.push(found),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}
