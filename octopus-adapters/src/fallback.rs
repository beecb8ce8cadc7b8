//! Fallbacks from their URLs: where a config file's `fallback` becomes a
//! journal.
//!
//! | URL | fallback |
//! |---|---|
//! | `file://path/to/dir`, `file:///abs/dir` | [`Journal`] in that directory (`?durability=fsync\|none\|<duration>&segment_bytes=…&replay_batch=…`) |
//! | `nats://[user:password@]host:port` | a JetStream stream a fleet shares (feature `nats`; see `crate::nats`: `?stream=octopus&replicas=1&lease=10s&timeout=2s`) |
//!
//! `durability` is [`Durability::Fsync`] by default; a duration such as
//! `100ms` is [`Durability::Interval`]. See the journal's docs for what
//! each keeps through a crash or a power loss.

use std::sync::Arc;

use octopus::journal::{Durability, Journal, JournalOptions};
use octopus::{Fallback, Result};

use crate::url::StoreUrl;

/// A fallback from its URL: a journal, opened (and recovered) now, or a
/// JetStream stream, connected now.
pub async fn open_fallback(url: &str) -> Result<Arc<dyn Fallback>> {
    let parsed = StoreUrl::parse(url)?;
    match parsed.scheme() {
        "file" => file(&parsed),
        "nats" => nats(url).await,
        _ => {
            Err(parsed
                .error("unknown fallback; expected file://path/to/journal or nats://host:port"))
        }
    }
}

#[cfg(feature = "nats")]
async fn nats(url: &str) -> Result<Arc<dyn Fallback>> {
    Ok(Arc::new(crate::nats::JetStreamJournal::connect(url).await?))
}

#[cfg(not(feature = "nats"))]
async fn nats(url: &str) -> Result<Arc<dyn Fallback>> {
    Err(StoreUrl::parse(url)?.error("octopus-adapters was built without the `nats` feature"))
}

/// The directory and options of a `file://` journal URL (a plan's
/// `fallback`), without opening it: for tools that look at a journal.
pub fn file_journal(url: &str) -> Result<(std::path::PathBuf, JournalOptions)> {
    let parsed = StoreUrl::parse(url)?;
    if parsed.scheme() != "file" {
        return Err(parsed.error("not a journal directory; expected file://path/to/journal"));
    }
    let options = file_options(&parsed)?;
    Ok((parsed.location().into(), options))
}

fn file(url: &StoreUrl<'_>) -> Result<Arc<dyn Fallback>> {
    let options = file_options(url)?;
    Ok(Arc::new(Journal::open(url.location(), options)?))
}

fn file_options(url: &StoreUrl<'_>) -> Result<JournalOptions> {
    if !url.has_authority() || url.location().is_empty() {
        return Err(url.error("expected file://path/to/journal or file:///absolute/path"));
    }
    url.refuse_userinfo("a journal has no login")?;
    let mut options = JournalOptions::default();
    for param in url.params() {
        options = match param.name.as_str() {
            "durability" => options.durability(durability(url, param)?),
            "segment_bytes" => options.segment_bytes(url.positive(param)?),
            "replay_batch" => {
                options.replay_batch(usize::try_from(url.positive(param)?).unwrap_or(usize::MAX))
            }
            _ => {
                return Err(url.unknown(
                    param,
                    "durability=fsync|none|<duration>, segment_bytes, replay_batch",
                ));
            }
        };
    }
    Ok(options)
}

/// `fsync`, `none`, or a positive duration (an interval between syncs).
fn durability(url: &StoreUrl<'_>, param: &crate::url::Param<'_>) -> Result<Durability> {
    match param.value.as_str() {
        "fsync" => Ok(Durability::Fsync),
        "none" => Ok(Durability::None),
        v => match octopus::config::parse_duration(v).filter(|d| !d.is_zero()) {
            Some(every) => Ok(Durability::Interval(every)),
            None => Err(url.error(format!(
                "`durability` must be fsync, none or a sync interval like 100ms, got {v:?}"
            ))),
        },
    }
}
