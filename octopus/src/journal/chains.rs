//! Chains: one key's entries of a batch become one conditional change;
//! refused chains become dead letters; a batch refused as a whole is split.

use super::dead::DeadLetter;
use super::entry::{self, Entry};
use crate::Result;
use crate::change::{Change, Precondition};
use crate::model::now_millis;
use crate::schema::Schema;
use crate::store::{BoxFuture, Store, normalize_key};

/// The change a chain of one key's entries makes: the first entry's
/// precondition, the last entry's row.
pub(super) fn change_of(
    schema: &'static Schema,
    chain: &[&Entry],
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
        })
        .collect()
}

/// Applies `changes`; a batch the store refuses as a whole is split until
/// each refusal is pinned on one change.
pub(super) fn apply_split<'a>(
    primary: &'a dyn Store,
    schema: &'static Schema,
    changes: &'a [Change],
) -> BoxFuture<'a, Result<Vec<Result<()>>>> {
    Box::pin(async move {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        match primary.apply(schema, changes).await {
            Ok(results) => Ok(results),
            Err(e) if e.is_unavailable() => Err(e),
            Err(e) if changes.len() == 1 => Ok(vec![Err(e)]),
            Err(_) => {
                let (a, b) = changes.split_at(changes.len() / 2);
                let mut results = apply_split(primary, schema, a).await?;
                results.extend(apply_split(primary, schema, b).await?);
                Ok(results)
            }
        }
    })
}
