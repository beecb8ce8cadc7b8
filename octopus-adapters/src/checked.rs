//! The check of a batch of conditional changes against what a SQL store's
//! locking reads found, shared by the SQL stores' `Store::apply`: each change is judged against the stored
//! version of its key, or against the row the change of the same key before
//! it in the batch leaves.

use std::collections::HashMap;

use octopus::{Change, Key, Record, Result, Schema};

/// What the locking reads found: every present key's version (`None` for
/// a model without one), and the whole rows read for the changes the
/// version alone does not decide.
pub(crate) struct Stored {
    /// Each present key's version.
    pub versions: HashMap<Key, Option<u64>>,
    /// Whole rows, read where the version does not decide.
    pub rows: HashMap<Key, Record>,
}

/// Each change's outcome, and the changes to write.
pub(crate) type Evaluated = (Vec<Result<()>>, Vec<usize>);

/// Checks each change against the stored version (or row) of its key, or
/// the row the last passing change of that key in this batch leaves;
/// returns each change's outcome and the changes to write (the last passing
/// one per key, in batch order). `Err`: the keys whose whole stored row
/// must be read to decide.
pub(crate) fn evaluate(
    schema: &'static Schema, changes: &[Change], todo: &[usize], stored: &Stored,
) -> std::result::Result<Evaluated, Vec<Key>> {
    let mut last: HashMap<&Key, usize> = HashMap::with_capacity(todo.len());
    let mut undecided = Vec::new();
    let mut outcomes = Vec::with_capacity(todo.len());
    for &i in todo {
        let change = &changes[i];
        let outcome = match (last.get(&change.key), stored.rows.get(&change.key)) {
            (Some(&j), _) => change.check(schema, changes[j].row.as_ref()),
            (None, Some(row)) => change.check(schema, Some(row)),
            (None, None) => {
                let version = stored.versions.get(&change.key).copied();
                match change.check_version(schema, version) {
                    Some(outcome) => outcome,
                    None => {
                        undecided.push(change.key.clone());
                        continue;
                    }
                }
            }
        };
        if outcome.is_ok() {
            last.insert(&change.key, i);
        }
        outcomes.push(outcome);
    }
    if !undecided.is_empty() {
        return Err(undecided);
    }
    let mut writes: Vec<usize> = last.into_values().collect();
    writes.sort_unstable();
    Ok((outcomes, writes))
}
