//! The journal's entry format and rules, for durable fallbacks whose log is
//! not a directory of files (a stream on a distributed log, shared by many
//! servers): the same checks at write time, the same checksummed entries,
//! the same conditional replay and dead letters.
//!
//! A message is a journal line whose sequence number is 0: the log numbers
//! it, and [`decode`] gives the entry that number.

use super::DeadLetter;
use super::chains::{apply_split, change_of, dead_letters, rounds};
use super::entry::{self, Entry};
use super::index::{self, Pending};
use crate::Result;
use crate::model::now_millis;
use crate::schema::Schema;
use crate::store::Store;
use crate::value::Key;

pub use super::entry::Intent;
pub use super::rules::{Known, check as check_write};

/// The message for `intent` on `key`: a checksummed journal line numbered
/// 0. `after` is the log's number of the pending entry of the key it was
/// checked against, if any (refused at replay, that entry takes this one
/// with it).
pub fn encode(
    schema: &'static Schema, key: &Key, intent: Intent<'_>, after: Option<u64>,
) -> Vec<u8> {
    let mut line = entry::line_in_batch(
        0,
        0,
        None,
        &entry::body(schema, now_millis(), key, intent, after),
    );
    line.pop(); // the newline
    line
}

/// The entry of a message [`encode`] wrote, numbered `seq` by the log; an
/// error says why the bytes are not one (a checksum, a field).
pub fn decode(message: &[u8], seq: u64) -> std::result::Result<Entry, String> {
    let mut e = super::decode_line(message)?;
    e.seq = seq;
    Ok(e)
}

/// What reads see of `e`: its row (read by column name, so an entry of
/// another shape of the model reads), or a delete.
pub fn pending(schema: &'static Schema, e: &Entry) -> std::result::Result<Pending, String> {
    index::decode(schema, e).map_err(|(seq, column, reason)| {
        format!(
            "entry {seq} (table `{}`), column `{column}`: {reason}",
            schema.table()
        )
    })
}

/// What [`apply`] did with a table's entries.
#[derive(Debug, Default)]
pub struct Applied<'a> {
    /// Entries the primary now holds.
    pub applied: Vec<&'a Entry>,
    /// Entries it refused (their precondition no longer held, a constraint,
    /// or an entry they were checked against was refused).
    pub dead: Vec<DeadLetter>,
}

/// Applies one table's entries (in log order) to `primary`, round by round:
/// round *n* holds the *n*-th entry of every key, so each entry is checked
/// against what the ones before it left, atomically against other writers
/// (see [`Store::apply`]). An entry written after one refused now or
/// before (`refused_before`) is refused with it. `Unavailable` stops it:
/// what it returns with the error was done before.
pub async fn apply<'a>(
    primary: &dyn Store, schema: &'static Schema, entries: &[&'a Entry],
    refused_before: &(dyn Fn(u64) -> bool + Sync),
) -> (Applied<'a>, Result<()>) {
    let mut out = Applied::default();
    let mut refused = std::collections::HashSet::new();
    for round in rounds(entries) {
        let (mut changes, mut runs) = (Vec::new(), Vec::new());
        for run in round {
            let after = run[0].after;
            if let Some(a) = after.filter(|a| refused_before(*a) || refused.contains(a)) {
                let reason = format!("it was written after entry {a}, which was refused");
                refused.extend(run.iter().map(|e| e.seq));
                out.dead.extend(dead_letters(&run, &reason));
                continue;
            }
            match change_of(schema, &run) {
                Ok(change) => {
                    changes.push(change);
                    runs.push(run);
                }
                Err(reason) => {
                    refused.extend(run.iter().map(|e| e.seq));
                    out.dead.extend(dead_letters(&run, &reason));
                }
            }
        }
        let mut slots: Vec<Option<Result<()>>> = (0..changes.len()).map(|_| None).collect();
        let done = apply_split(primary, schema, &changes, &mut slots).await;
        for (run, slot) in runs.into_iter().zip(slots) {
            match slot {
                Some(Ok(())) => out.applied.extend(run),
                Some(Err(e)) => {
                    refused.extend(run.iter().map(|e| e.seq));
                    out.dead.extend(dead_letters(&run, &e.to_string()));
                }
                None => {}
            }
        }
        if let Err(e) = done {
            return (out, Err(e));
        }
    }
    (out, Ok(()))
}
