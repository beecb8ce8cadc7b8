//! Reading a stream by sequence number: its extent, and a range of its
//! messages fetched from the leader in parallel.

use std::ops::RangeInclusive;

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use octopus::{Error, Result};

/// The sequence numbers a stream holds (its first to its last), or `None`
/// when it holds nothing. `name` names the journal in errors.
pub(super) async fn extent(stream: &Stream, name: &str) -> Result<Option<RangeInclusive<u64>>> {
    let mut stream = stream.clone();
    let info = stream
        .info()
        .await
        .map_err(|e| Error::unavailable(name, e.to_string()))?;
    let state = &info.state;
    Ok((state.messages > 0).then_some(state.first_sequence..=state.last_sequence))
}

/// The messages numbered `seqs`, in order, read from the stream's leader
/// (a replica may lag) in parallel; a deleted one is a gap.
pub(super) async fn messages(
    stream: &Stream, seqs: RangeInclusive<u64>, name: &str,
) -> Result<Vec<StreamMessage>> {
    let unavailable = |e: &dyn std::fmt::Display| Error::unavailable(name, e.to_string());
    let mut gets = tokio::task::JoinSet::new();
    for seq in seqs {
        let stream = stream.clone();
        gets.spawn(async move { stream.get_raw_message(seq).await });
    }
    let mut messages = Vec::with_capacity(gets.len());
    while let Some(got) = gets.join_next().await {
        match got.map_err(|e| unavailable(&e))? {
            Ok(m) => messages.push(m),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
            Err(e) => return Err(unavailable(&e)),
        }
    }
    messages.sort_by_key(|m| m.sequence);
    Ok(messages)
}
