//! The history files of the application processes, as the checker's
//! records.

use std::collections::{HashMap, HashSet};

use octopus_test_support::history::{Op, Outcome, Record};

/// Refused at replay: `(key, Some(value))` for puts, `(key, None)` for
/// deletes.
pub type DeadLetters = HashSet<(u64, Option<i64>)>;

/// A process's dead-letter file (`<key> <value or ->` lines).
pub fn dead_letters(text: &str) -> DeadLetters {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.parse().ok()?, v.trim().parse().ok()))
        })
        .collect()
}

/// An operation as invoked: key, operation, argument, time.
struct Invoked {
    key: u64,
    op: String,
    value: i64,
    at: u64,
}

/// The records of one process's history file. Writes replay refused, and
/// deletes of a key a refused delete names, may or may not have happened.
pub fn parse(client: &str, text: &str, dead: &DeadLetters) -> Vec<Record> {
    let mut invoked: HashMap<&str, Invoked> = HashMap::new();
    let mut done: HashMap<&str, (&str, &str, u64)> = HashMap::new();
    for line in text.lines() {
        match line.split(' ').collect::<Vec<_>>()[..] {
            ["I", id, key, op, value, at] => {
                let parsed = Invoked {
                    key: key.parse().unwrap(),
                    op: op.to_owned(),
                    value: value.parse().unwrap(),
                    at: at.parse().unwrap(),
                };
                invoked.insert(id, parsed);
            }
            ["C", id, outcome, read, at] => {
                done.insert(id, (outcome, read, at.parse().unwrap()));
            }
            // A line cut by a SIGKILL.
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (id, inv) in invoked {
        // Killed before it completed: unknown, until the end of time.
        let (outcome, read, completed) =
            done.get(id).copied().unwrap_or(("unknown", "-", u64::MAX));
        let record = |key, op, outcome| Record {
            client: format!("{client} {id}"),
            key,
            op,
            outcome,
            invoked: inv.at,
            completed,
        };
        match (inv.op.as_str(), outcome) {
            ("read" | "read_many", "ok") => {
                let keys = if inv.op == "read" {
                    vec![inv.key]
                } else {
                    crate::many(inv.key).to_vec()
                };
                for (k, v) in keys.into_iter().zip(read.split(',')) {
                    out.push(record(k, Op::Read(value(v)), Outcome::Ok));
                }
            }
            ("read" | "read_many", _) => {}
            (op, outcome) => {
                let written = (op != "delete").then_some(inv.value);
                // The row an update was built on, or a delete's `NotFound`.
                if let Some(seen) = read
                    .parse()
                    .ok()
                    .map(Some)
                    .or((read == "none").then_some(None))
                {
                    out.push(record(inv.key, Op::Read(seen), Outcome::Ok));
                }
                if outcome == "notfound" && op == "delete" {
                    out.push(record(inv.key, Op::Read(None), Outcome::Ok));
                }
                match outcome {
                    "exists" => out.push(record(inv.key, Op::Exists, Outcome::Refused)),
                    "conflict" => {
                        if let Ok(before) = read.parse() {
                            out.push(record(inv.key, Op::Changed(before), Outcome::Refused));
                        }
                    }
                    _ => {}
                }
                let mut result = match outcome {
                    "ok" | "journaled" => Outcome::Ok,
                    "unknown" => Outcome::Unknown,
                    _ => Outcome::Refused,
                };
                if result == Outcome::Ok && dead.contains(&(inv.key, written)) {
                    result = Outcome::Unknown;
                }
                let op = match (op, written) {
                    ("create", Some(v)) => Op::Created(v),
                    (_, Some(v)) => Op::Put(v),
                    (_, None) => Op::Delete,
                };
                out.push(record(inv.key, op, result));
            }
        }
    }
    out
}

fn value(text: &str) -> Option<i64> {
    text.parse().ok()
}
