//! Chains: one key's entries of a batch become conditional changes (one per
//! run of entries each checked against the one before it); refused chains
//! become dead letters; a batch refused as a whole is split.

use std::collections::HashMap;

use super::dead::DeadLetter;
use super::entry::{self, Entry};
use crate::Result;
use crate::change::{Change, Precondition};
use crate::model::now_millis;
use crate::schema::Schema;
use crate::store::{BoxFuture, Store, normalize_key};
use crate::value::Key;

/// The change a run of one key's entries makes: the first entry's
/// precondition, the last entry's row.
pub(super) fn change_of(
    schema: &'static Schema, chain: &[&Entry],
) -> std::result::Result<Change, String> {
    let (first, last) = (chain[0], chain[chain.len() - 1]);
    let key = entry::key_from_json(schema, &entry::key_json(&first.key))
        .and_then(|k| normalize_key(schema, k).map_err(|e| e.to_string()))?;
    let row = match last.op.record() {
        None => None,
        Some(map) => Some(
            entry::record_from_json(schema, map)
                .map_err(|(column, reason)| format!("column `{column}`: {reason}"))?,
        ),
    };
    let precondition = match (&first.op, schema.version_index()) {
        // A first-format put of a versioned model: never over a newer row.
        (entry::Op::Put(map), Some(i)) => match map
            .get(schema.columns()[i].name())
            .and_then(serde_json::Value::as_u64)
        {
            Some(v) => Precondition::OlderThan(v),
            None => Precondition::Always,
        },
        (op, _) => op.precondition(),
    };
    Ok(Change {
        key,
        precondition,
        row,
    })
}

pub(super) fn dead_letters(chain: &[&Entry], error: &str) -> Vec<DeadLetter> {
    let at = now_millis();
    let head = chain[0].seq;
    chain
        .iter()
        .map(|e| DeadLetter {
            entry: (*e).clone(),
            error: if e.seq == head {
                error.to_owned()
            } else {
                format!("follows refused entry {head}: {error}")
            },
            at,
            requeued_as: None,
        })
        .collect()
}

/// A batch's entries in rounds: round *n* holds the *n*-th entry of every
/// key, so each entry is checked against what the entries of its key
/// before it left (they were applied in an earlier round) and a key's
/// entries apply in journal order. Each entry is its own change: folding a
/// key's entries into one would check only the first precondition, and an
/// entry already applied (by a commit the client gave up on, say) would
/// refuse every entry after it.
pub(super) fn rounds<'a>(entries: &[&'a Entry]) -> Vec<Vec<Vec<&'a Entry>>> {
    let mut depth: HashMap<&Key, usize> = HashMap::new();
    let mut rounds: Vec<Vec<Vec<&'a Entry>>> = Vec::new();
    for &e in entries {
        let n = depth.entry(&e.key).or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(vec![e]);
        *n += 1;
    }
    rounds
}

/// Applies `changes`, filling `slots` with each change's outcome as the
/// store commits it; a batch the store refuses as a whole is split until
/// each refusal is pinned on one change. `Unavailable` stops it: slots
/// already filled were committed (or refused) and stay.
pub(super) fn apply_split<'a>(
    primary: &'a dyn Store, schema: &'static Schema, changes: &'a [Change],
    slots: &'a mut [Option<Result<()>>],
) -> BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        if changes.is_empty() {
            return Ok(());
        }
        match primary.apply(schema, changes).await {
            Ok(results) => {
                for (slot, result) in slots.iter_mut().zip(results) {
                    *slot = Some(result);
                }
                Ok(())
            }
            Err(e) if e.is_unavailable() => Err(e),
            Err(e) if changes.len() == 1 => {
                slots[0] = Some(Err(e));
                Ok(())
            }
            Err(_) => {
                let half = changes.len() / 2;
                let (a, b) = changes.split_at(half);
                let (sa, sb) = slots.split_at_mut(half);
                apply_split(primary, schema, a, sa).await?;
                apply_split(primary, schema, b, sb).await
            }
        }
    })
}
