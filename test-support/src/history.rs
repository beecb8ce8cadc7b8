//! A history checker for one register per key (create, update, delete,
//! read), in O(n log n) per key.
//!
//! Every operation is recorded with its invocation and completion times
//! (one clock for every process) and what the client was told. Every write
//! writes a value no other write writes, so a read names the write it saw.
//! The checks, each a real-time rule a linearizable register obeys:
//!
//! - **stale**: a read returned the value of write `w` (or `None` after a
//!   delete `w`), yet an acknowledged write `w2` began after `w` completed
//!   and completed before the read began;
//! - **phantom**: a read returned a value no write wrote;
//! - **future**: a read returned a value only writes that began after it
//!   ended wrote;
//! - **lost**: the final value is that of a write that an acknowledged
//!   write began after (so the final state went back in time), or of no
//!   write at all, or the final state is empty while the last acknowledged
//!   writes all stored a value (and no delete could have come last);
//!
//! - **resurrected**: a stale read that returned a row an acknowledged
//!   delete had removed;
//! - **false_conflict**: a create refused with `AlreadyExists` while every
//!   state it could have met was empty, or an update refused with
//!   `Conflict` although no other write could have come between the read
//!   it was built on and its end.
//!
//! - **missed_conflict**: a create acknowledged although every state it
//!   could have met held a row.
//!
//! A delete answered `NotFound` is a read of `None`. Writes reported as dead letters count as unknown (the recorder marks them so). A
//! write whose outcome is unknown (its client crashed or timed out) may or
//! may not have happened.

use std::collections::BTreeMap;

/// What an operation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Stored `value` (an update).
    Put(i64),
    /// Created the row with `value`: it must have been absent.
    Created(i64),
    /// Deleted the row.
    Delete,
    /// Read `Some(value)` or `None`.
    Read(Option<i64>),
    /// A create refused with `AlreadyExists`: the row was there.
    Exists,
    /// An update built on a read of `Some(value)`, refused with `Conflict`:
    /// the row had changed since.
    Changed(i64),
}

/// How the operation ended for its client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Acknowledged.
    Ok,
    /// Refused (a conflict, a missing row): it did not happen.
    Refused,
    /// Unknown: it may or may not have happened, at any time after it began.
    Unknown,
}

/// One operation on one key.
#[derive(Debug, Clone)]
pub struct Record {
    /// Who did it (a process and task), for the reports.
    pub client: String,
    /// The key.
    pub key: u64,
    /// What it did.
    pub op: Op,
    /// How it ended for the client.
    pub outcome: Outcome,
    /// Its invocation, on the shared clock.
    pub invoked: u64,
    /// Its completion, on the shared clock (`u64::MAX`: never seen).
    pub completed: u64,
}

/// A violation: the key, the rule, and the operations involved.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The key.
    pub key: u64,
    /// The rule broken (`stale`, `phantom`, `lost`, ...: see the module).
    pub rule: &'static str,
    /// What happened, with the sub-history around it.
    pub detail: String,
}

/// The key's operations that overlap `from..=to`, one per line (at most
/// 20, the latest ones): the sub-history a violation prints.
fn around(records: &[&Record], from: u64, to: u64) -> String {
    // Only the first violations are printed; the rest are counted.
    if PRINTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 20 {
        return " (not printed)".into();
    }
    let mut near: Vec<&&Record> = records
        .iter()
        .filter(|r| r.invoked <= to && r.completed >= from)
        .collect();
    near.sort_by_key(|r| r.invoked);
    let skip = near.len().saturating_sub(20);
    near[skip..]
        .iter()
        .map(|r| {
            format!(
                "\n    {} {:?} {:?} {}..{}",
                r.client, r.op, r.outcome, r.invoked, r.completed
            )
        })
        .collect()
}

/// How many sub-histories were built (each walks the key's history).
static PRINTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A write as the checks see it.
#[derive(Debug, Clone)]
struct Write {
    value: Option<i64>,
    invoked: u64,
    completed: u64,
    acked: bool,
}

/// Checks `history` against the final state of each key (`None`: absent)
/// and the initial state before any operation (`None` unless given).
pub fn check(
    history: &[Record], initial: &BTreeMap<u64, Option<i64>>,
    final_state: &BTreeMap<u64, Option<i64>>,
) -> Vec<Violation> {
    let mut by_key: BTreeMap<u64, Vec<&Record>> = BTreeMap::new();
    for r in history {
        by_key.entry(r.key).or_default().push(r);
    }
    let mut out = Vec::new();
    for (key, records) in by_key {
        let start = initial.get(&key).copied().flatten();
        let last = final_state.get(&key).copied().flatten();
        check_key(key, &records, start, last, &mut out);
    }
    out
}

fn check_key(
    key: u64, records: &[&Record], initial: Option<i64>, final_value: Option<i64>,
    out: &mut Vec<Violation>,
) {
    // The initial state is a write that completed before everything.
    let mut writes = vec![Write {
        value: initial,
        invoked: 0,
        completed: 0,
        acked: true,
    }];
    for r in records {
        let value = match r.op {
            Op::Put(v) | Op::Created(v) => Some(v),
            Op::Delete => None,
            Op::Read(_) | Op::Exists | Op::Changed(_) => continue,
        };
        if r.outcome != Outcome::Refused {
            writes.push(Write {
                value,
                invoked: r.invoked,
                // A write not acknowledged may take effect at any time
                // after it began (a timed-out statement committing late, a
                // journaled write replay reached later): no deadline.
                completed: if r.outcome == Outcome::Ok {
                    r.completed
                } else {
                    u64::MAX
                },
                acked: r.outcome == Outcome::Ok,
            });
        }
    }
    // Acknowledged writes by completion, with the latest invocation among
    // those completed so far.
    let mut acked: Vec<&Write> = writes.iter().filter(|w| w.acked).collect();
    acked.sort_by_key(|w| w.completed);
    // Per prefix, the acknowledged write invoked latest.
    let mut latest: Vec<usize> = Vec::with_capacity(acked.len());
    for (i, w) in acked.iter().enumerate() {
        let keep = latest.last().filter(|&&j| acked[j].invoked >= w.invoked);
        latest.push(keep.copied().unwrap_or(i));
    }
    // The acknowledged write invoked latest among those completed before
    // `t`.
    let newest_before = |t: u64| -> Option<&Write> {
        let n = acked.partition_point(|w| w.completed < t);
        n.checked_sub(1).map(|i| acked[latest[i]])
    };
    let superseded_by = |t: u64| newest_before(t).map(|w| w.invoked);
    // The writes that could have produced a value (puts by value; deletes
    // all produce `None`).
    let candidates = |value: Option<i64>| writes.iter().filter(move |w| w.value == value);

    for r in records {
        let Op::Read(seen) = r.op else { continue };
        if r.outcome != Outcome::Ok {
            continue;
        }
        if candidates(seen).next().is_none() {
            out.push(Violation {
                key,
                rule: "phantom",
                detail: format!("{} read {seen:?}, which no write wrote ({r:?})", r.client),
            });
            continue;
        }
        if !candidates(seen).any(|w| w.invoked <= r.completed) {
            out.push(Violation {
                key,
                rule: "future",
                detail: format!(
                    "{} read {seen:?} at {}..{}, written only by writes that began after the read ended",
                    r.client, r.invoked, r.completed
                ),
            });
            continue;
        }
        // Stale unless some write of that value was not superseded before
        // the read began.
        let newest = superseded_by(r.invoked);
        let fresh = candidates(seen)
            .any(|w| w.invoked <= r.completed && newest.is_none_or(|inv| inv <= w.completed));
        if !fresh {
            let by_delete = newest_before(r.invoked).is_some_and(|w| w.value.is_none());
            out.push(Violation {
                key,
                rule: if seen.is_some() && by_delete {
                    "resurrected"
                } else {
                    "stale"
                },
                detail: format!(
                    "{} read {seen:?} at {}..{}; every write of it was superseded by an acknowledged write that completed before the read began, the latest: {:?}; the writes of {seen:?}: {:?}",
                    r.client,
                    r.invoked,
                    r.completed,
                    newest_before(r.invoked),
                    candidates(seen).take(5).collect::<Vec<_>>()
                ) + &format!(
                    "; the key's history around it:{}",
                    around(
                        records,
                        newest_before(r.invoked).map_or(0, |w| w.invoked),
                        r.completed
                    )
                ),
            });
        }
    }

    for r in records {
        let allowed = match r.op {
            // Some state the create could have met held a row.
            Op::Exists => writes.iter().any(|w| {
                w.value.is_some()
                    && w.invoked <= r.completed
                    && superseded_by(r.invoked).is_none_or(|inv| inv <= w.completed)
            }),
            // Some other write could have come after the value read.
            Op::Changed(read) => writes.iter().any(|w| {
                w.value != Some(read) && w.invoked <= r.completed && w.completed >= r.invoked
            }),
            // An acknowledged create met an empty key in some state it
            // could have met.
            Op::Created(_) if r.outcome == Outcome::Ok => writes.iter().any(|w| {
                w.value.is_none()
                    && w.invoked <= r.completed
                    && superseded_by(r.invoked).is_none_or(|inv| inv <= w.completed)
            }),
            _ => continue,
        };
        if !allowed {
            out.push(Violation {
                key,
                rule: if matches!(r.op, Op::Created(_)) {
                    "missed_conflict"
                } else {
                    "false_conflict"
                },
                detail: format!(
                    "{} was {} ({:?}) where no history allows it; the key's history around it:{}",
                    r.client,
                    if r.outcome == Outcome::Ok {
                        "acknowledged"
                    } else {
                        "refused"
                    },
                    r.op,
                    around(records, r.invoked.saturating_sub(50_000_000), r.completed)
                ),
            });
        }
    }

    // The final state: some write of that value that no acknowledged write
    // began after.
    let end = u64::MAX;
    let newest = superseded_by(end);
    let survives = candidates(final_value).any(|w| newest.is_none_or(|inv| inv <= w.completed));
    if !survives {
        let last_acked: Vec<Option<i64>> = acked
            .iter()
            .filter(|w| newest.is_some_and(|inv| inv <= w.completed))
            .map(|w| w.value)
            .collect();
        out.push(Violation {
            key,
            rule: "lost",
            detail: format!(
                "the final state is {final_value:?}; the acknowledged writes no acknowledged write began after wrote {last_acked:?}"
            ),
        });
    }
}
