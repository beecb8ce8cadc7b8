//! The dead-letter stream: entries the primary refused at replay, each
//! with the primary's error, kept until an operator removes them.

use octopus::journal::DeadLetter;
use octopus::{Error, Result};

use super::{JetStreamJournal, range};

impl JetStreamJournal {
    /// Every dead letter the fleet's drainers stored, in the order they
    /// were refused. A message that is not a dead letter is an error
    /// naming it.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let name = &self.inner.name;
        let Some(all) = range::extent(&self.inner.dead, name).await? else {
            return Ok(Vec::new());
        };
        let mut letters = Vec::new();
        // 512 requests at a time.
        let (mut from, last) = (*all.start(), *all.end());
        while from <= last {
            let to = last.min(from + 511);
            for m in range::messages(&self.inner.dead, from..=to, name).await? {
                let letter = serde_json::from_slice(&m.payload)
                    .map_err(|e| e.to_string())
                    .and_then(|json| DeadLetter::from_json(&json))
                    .map_err(|why| {
                        let at = format!("dead-letter message {} on `{}`", m.sequence, m.subject);
                        Error::rejected(name, format!("{at}: {why}"))
                    })?;
                letters.push(letter);
            }
            from = to + 1;
        }
        Ok(letters)
    }
}
