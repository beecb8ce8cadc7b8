//! A plan's `fallback`: one URL, or a chain of them tried in order.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::url::Redacted;

/// Where writes go that the primary cannot take: one fallback's URL
/// (`fallback = "file://data/journal"`), or a chain tried in order, each
/// link taking what the one before could not
/// (`fallback = ["nats://127.0.0.1:4222?stream=octopus", "file://data/journal"]`;
/// [`crate::FallbackChain`]). Its `Debug` shows URLs without passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Fallbacks(Vec<String>);

impl Fallbacks {
    /// One fallback.
    pub fn one(url: impl Into<String>) -> Self {
        Fallbacks(vec![url.into()])
    }

    /// The URLs, in the order they are tried (at least one).
    pub fn urls(&self) -> &[String] {
        &self.0
    }

    /// Whether there are several (a chain).
    pub fn is_chain(&self) -> bool {
        self.0.len() > 1
    }
}

impl fmt::Debug for Fallbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|u| Redacted(u)))
            .finish()
    }
}

impl<'de> Deserialize<'de> for Fallbacks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Urls;
        impl<'de> Visitor<'de> for Urls {
            type Value = Fallbacks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fallback URL, or a list of them tried in order")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Fallbacks, E> {
                Ok(Fallbacks::one(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fallbacks, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element::<String>()? {
                    if urls.contains(&url) {
                        return Err(de::Error::custom(format!(
                            "{} is named twice in the chain",
                            crate::config::redact_url(&url)
                        )));
                    }
                    urls.push(url);
                }
                if urls.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list: leave `fallback` out for none",
                    ));
                }
                Ok(Fallbacks(urls))
            }
        }
        d.deserialize_any(Urls)
    }
}
