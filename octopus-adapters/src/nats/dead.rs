//! The dead-letter stream: entries the primary refused at replay, each
//! with the primary's error, kept until an operator removes them.

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use octopus::journal::DeadLetter;
use octopus::{Error, Result};

use super::JetStreamJournal;

impl JetStreamJournal {
    /// Every dead letter the fleet's drainers stored, in the order they
    /// were refused. A message that is not a dead letter is an error
    /// naming it.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let unavailable =
            |e: &dyn std::fmt::Display| Error::unavailable(&self.inner.name, e.to_string());
        let mut stream = self.inner.dead.clone();
        let state = stream
            .info()
            .await
            .map_err(|e| unavailable(&e))?
            .state
            .clone();
        let mut letters = Vec::with_capacity(state.messages as usize);
        if state.messages == 0 {
            return Ok(letters);
        }
        // Read from the leader, 512 at a time in parallel, in order.
        let seqs: Vec<u64> = (state.first_sequence..=state.last_sequence).collect();
        for chunk in seqs.chunks(512) {
            let mut gets = tokio::task::JoinSet::new();
            for &seq in chunk {
                let dead = self.inner.dead.clone();
                gets.spawn(async move { (seq, dead.get_raw_message(seq).await) });
            }
            let mut got = Vec::with_capacity(chunk.len());
            while let Some(r) = gets.join_next().await {
                let (seq, m) = r.map_err(|e| unavailable(&e))?;
                match m {
                    Ok(m) => got.push((seq, m)),
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                    Err(e) => return Err(unavailable(&e)),
                }
            }
            got.sort_by_key(|(seq, _)| *seq);
            for (seq, m) in got {
                let letter = serde_json::from_slice(&m.payload)
                    .map_err(|e| e.to_string())
                    .and_then(|json| DeadLetter::from_json(&json))
                    .map_err(|why| {
                        Error::rejected(
                            &self.inner.name,
                            format!("dead-letter message {seq} on `{}`: {why}", m.subject),
                        )
                    })?;
                letters.push(letter);
            }
        }
        Ok(letters)
    }
}
