//! Writes into the stream, checked against the row's last message and
//! published on the condition that it is still the last; reads of pending
//! rows.

use std::sync::atomic::Ordering;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use octopus::journal::Pending;
use octopus::journal::log::{self, Known};
use octopus::{Error, Key, Mode, Record, Result, Schema, Write, WriteOutcome, key_of};

use super::{JetStreamJournal, subject};

/// Publishes of one write that may lose the race for its row's subject to
/// another server's before it gives up with `Unavailable`.
const ATTEMPTS: usize = 16;
/// Times a publish whose answer was lost is sent again, with its id.
const RESENDS: usize = 2;

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
            let message = PublishMessage::build()
                .payload(log::encode(schema, &key, intent, after).into())
                .expected_last_subject_sequence(after.unwrap_or(0));
            match self.publish(&subject, message).await {
                Ok(ack) => {
                    self.inner.appended.fetch_add(1, Ordering::Relaxed);
                    self.inner
                        .own_last
                        .fetch_max(ack.sequence, Ordering::SeqCst);
                    self.inner.pending.send_modify(|n| *n += 1);
                    self.saw_busy();
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

    /// Publishes `message` on `subject` under a message id of its own and
    /// waits for the acknowledgement. A publish whose answer was lost (a
    /// timeout, a broken connection) is sent again with the same id: if the
    /// first one was stored, JetStream says `duplicate` and stores nothing
    /// twice, so an answer that comes is the truth about this write.
    async fn publish(
        &self, subject: &str, message: PublishMessage,
    ) -> std::result::Result<PublishAck, PublishError> {
        let message = message.message_id(uuid::Uuid::now_v7().to_string());
        let mut tries = 0;
        loop {
            let sent = match self
                .inner
                .js
                .send_publish(subject.to_owned(), message.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match sent {
                Err(e)
                    if tries < RESENDS
                        && matches!(
                            e.kind(),
                            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
                        ) =>
                {
                    tries += 1
                }
                other => return other,
            }
        }
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

    /// Whether the stream holds an entry of `key` (applied or not; one not
    /// removed yet still counts): the last message on its subject, asked of
    /// the stream's leader, so a write of any server is seen as soon as it
    /// was acknowledged. When the stream does not answer: `true`.
    pub(super) async fn row_has_entries(&self, schema: &'static Schema, key: &Key) -> bool {
        let subject = subject::row(&self.inner.prefix, schema.table(), key);
        match self
            .inner
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(_) => true,
            Err(e) => e.kind() != LastRawMessageErrorKind::NoMessageFound,
        }
    }

    /// The last message on `subject`, decoded: its sequence number and
    /// what it writes.
    async fn last(&self, schema: &'static Schema, subject: &str) -> Result<Option<(u64, Pending)>> {
        // From the stream's leader: a replica answering a direct get may
        // not have the last acknowledged write yet.
        let message = match self
            .inner
            .stream
            .get_last_raw_message_by_subject(subject)
            .await
        {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
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
