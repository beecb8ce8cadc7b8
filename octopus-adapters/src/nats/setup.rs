//! Connecting: the URL's settings, and the streams created or checked.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use octopus::{Error, Result};

use crate::url::StoreUrl;

/// Settings of a [`JetStreamJournal`], from its URL:
/// `nats://[user:password@]host:port?stream=octopus&replicas=1&lease=10s&timeout=2s`.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub stream: String,
    pub replicas: usize,
    pub lease: Duration,
    pub timeout: Duration,
}

/// The stream `name` on `subjects`: created, or checked if it exists.
pub(super) async fn open_stream(
    js: &jetstream::Context, options: &Options, name: &str, subjects: String, url: &str,
) -> Result<stream::Stream> {
    let mut stream = js
        .get_or_create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects.clone()],
            storage: stream::StorageType::File,
            allow_direct: true,
            num_replicas: options.replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::unavailable(url, e.to_string()))?;
    let config = stream
        .info()
        .await
        .map_err(|e| Error::unavailable(url, e.to_string()))?
        .config
        .clone();
    // Anything that lets JetStream drop a message the drainer has not
    // applied would drop acknowledged writes.
    let refuse = |why: String| {
        Err(Error::config(
            url,
            format!(
                "stream `{name}` exists with settings that can lose acknowledged writes: {why}"
            ),
        ))
    };
    if config.subjects != [subjects.clone()] {
        return refuse(format!(
            "it must take exactly `{subjects}`, not {:?}",
            config.subjects
        ));
    }
    if config.retention != stream::RetentionPolicy::Limits {
        return refuse(format!(
            "its retention is {:?}, not limits",
            config.retention
        ));
    }
    if !config.max_age.is_zero()
        || config.max_messages > 0
        || config.max_bytes > 0
        || config.max_messages_per_subject > 0
    {
        return refuse("it has an age, count or size limit".into());
    }
    if config.deny_purge || config.deny_delete {
        return refuse("it denies purges or deletes, which replay needs".into());
    }
    if config.num_replicas < 3 {
        tracing::warn!(
            stream = name,
            replicas = config.num_replicas,
            "JetStream stream has fewer than 3 replicas: a server or power loss can lose acknowledged writes (run 3 replicas and sync_interval: always)"
        );
    }
    Ok(stream)
}

pub(super) fn options(url: &StoreUrl<'_>) -> Result<Options> {
    if url.scheme() != "nats" || !url.has_authority() || url.location().is_empty() {
        return Err(url.error("expected nats://host:port?stream=…"));
    }
    let mut o = Options {
        stream: "octopus".into(),
        replicas: 1,
        lease: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
    };
    for param in url.params() {
        let seconds = |v: &str| octopus::config::parse_duration(v).filter(|d| !d.is_zero());
        match param.name.as_str() {
            "stream" => {
                let v = param.value.as_str();
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(url.error(format!(
                        "`stream` must be letters, digits, `_` or `-`, got {v:?}"
                    )));
                }
                o.stream = v.to_owned();
            }
            "replicas" => o.replicas = usize::try_from(url.positive(param)?).unwrap_or(5).min(5),
            "lease" | "timeout" => {
                let d = seconds(&param.value).ok_or_else(|| {
                    url.error(format!(
                        "`{}` must be a positive duration like 10s",
                        param.name
                    ))
                })?;
                if param.name == "lease" {
                    o.lease = d;
                } else {
                    o.timeout = d;
                }
            }
            _ => return Err(url.unknown(param, "stream, replicas, lease, timeout")),
        }
    }
    Ok(o)
}
