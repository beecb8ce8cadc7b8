//! Writes into the stream, checked against the row's last message and
//! published on the condition that it is still the last; reads of pending
//! rows.

use std::sync::atomic::Ordering;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::DirectGetErrorKind;
use octopus::journal::Pending;
use octopus::journal::log::{self, Known};
use octopus::{Error, Key, Mode, Record, Result, Schema, Write, WriteOutcome, key_of};

use super::{JetStreamJournal, subject};

/// Publishes of one write that may lose the race for its row's subject to
/// another server's before it gives up with `Unavailable`.
const ATTEMPTS: usize = 16;

impl JetStreamJournal {
    /// Checks `write` against its row's last message (or, with none,
    /// `cached`) and publishes it conditionally; a lost race checks again
    /// against the message that won.
    pub(super) async fn append(
        &self, schema: &'static Schema, write: &Write, cached: Option<&Record>,
    ) -> Result<WriteOutcome> {
        let key = match write {
            Write::Delete { key, .. } => key.clone(),
            other => key_of(
                schema,
                other.record().expect("inserts and updates carry a row"),
            )?,
        };
        let subject = subject::row(&self.inner.prefix, schema.table(), &key);
        for _ in 0..ATTEMPTS {
            let last = self.last(schema, &subject).await?;
            let known = match &last {
                Some((_, Pending::Put(row))) => Known::Row(row.clone()),
                Some((_, Pending::Deleted)) => Known::Absent,
                None => cached.map_or(Known::Unknown, |r| Known::Row(r.clone())),
            };
            let after = last.as_ref().map(|(seq, _)| *seq);
            let intent = log::check_write(schema, &key, write, &known)?;
            let id = format!(
                "{}-{}",
                self.inner.owner,
                self.inner.next_id.fetch_add(1, Ordering::Relaxed)
            );
            let message = PublishMessage::build()
                .payload(log::encode(schema, &key, intent, after).into())
                .message_id(id)
                .expected_last_subject_sequence(after.unwrap_or(0));
            let acked = match self.inner.js.send_publish(subject.clone(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match acked {
                Ok(_) => {
                    self.inner.appended.fetch_add(1, Ordering::Relaxed);
                    self.inner.pending.send_modify(|n| *n += 1);
                    if self.mode() == Mode::Healthy {
                        self.set_mode(Mode::Journaling);
                    }
                    self.inner.wake.notify_one();
                    return Ok(WriteOutcome::Journaled);
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => continue,
                Err(e) => return Err(Error::unavailable(&self.inner.name, e.to_string())),
            }
        }
        Err(Error::unavailable(
            &self.inner.name,
            format!(
                "table `{}`, key {key}: other servers kept writing it ({ATTEMPTS} attempts)",
                schema.table()
            ),
        ))
    }

    /// The pending write of `key`: the last message on its subject.
    pub(super) async fn pending_row(
        &self, schema: &'static Schema, key: &Key,
    ) -> Result<Option<Option<Record>>> {
        let subject = subject::row(&self.inner.prefix, schema.table(), key);
        Ok(self.last(schema, &subject).await?.map(|(_, p)| match p {
            Pending::Put(row) => Some(row),
            Pending::Deleted => None,
        }))
    }

    /// The last message on `subject`, decoded: its sequence number and
    /// what it writes.
    async fn last(&self, schema: &'static Schema, subject: &str) -> Result<Option<(u64, Pending)>> {
        let message = match self.inner.stream.direct_get_last_for_subject(subject).await {
            Ok(m) => m,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::unavailable(&self.inner.name, e.to_string())),
        };
        let refused = |why: String| {
            Error::rejected(
                &self.inner.name,
                format!("message {} on `{subject}`: {why}", message.sequence),
            )
        };
        let entry = log::decode(&message.payload, message.sequence).map_err(refused)?;
        let pending = log::pending(schema, &entry).map_err(refused)?;
        Ok(Some((message.sequence, pending)))
    }
}
