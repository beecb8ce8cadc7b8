//! Power loss in the middle of the chaos: the first incarnation of process
//! p0 ran under `strace`; crash states built from its journal's file
//! operations (every synced byte plus any subset of the unsynced writes,
//! torn or zeroed pages included) must each open and hold every put
//! acknowledged as journaled before the crash point: still in a segment,
//! or replayed (below the first entry the state holds, or at most the
//! number the checkpoint reached). Deletes carry no value to find them by
//! and are not checked here.

use std::collections::HashMap;
use std::path::Path;

use crash_states::{Event, Rng, State};
use octopus::journal::{Journal, JournalOptions};
use octopus::{Model, Write};

use crate::Item;

/// What the crash states showed.
#[derive(Debug, Default)]
pub struct Summary {
    pub states: usize,
    pub refused: Vec<String>,
    pub lost: Vec<String>,
    pub marks: usize,
}

/// Builds `states` crash states from the trace of the journal at `journal`
/// (marks in `marks`) and checks each.
pub async fn check(trace: &Path, journal: &Path, marks: &Path, states: usize) -> Summary {
    let text = std::fs::read_to_string(trace).unwrap();
    let events = crash_states::parse(&text, journal, marks);
    let seqs = sequence_numbers(&events);
    let mut summary = Summary {
        marks: events
            .iter()
            .filter(|e| matches!(e, Event::Mark(_)))
            .count(),
        ..Summary::default()
    };
    let mut rng = Rng::new(0x5eed ^ events.len() as u64);
    for _ in 0..states {
        let at = rng.below(events.len() as u64 + 1) as usize;
        let state = State::after(&events[..at], &mut rng);
        summary.states += 1;
        if let Err(why) = check_state(&state, &seqs).await {
            let why = format!(
                "the crash state after {at} of {} events: {why}",
                events.len()
            );
            if why.contains("lost") {
                summary.lost.push(why);
            } else {
                summary.refused.push(why);
            }
        }
    }
    summary
}

/// Every put's sequence number, by `(key, value)`, from every line the
/// journal wrote.
fn sequence_numbers(events: &[Event]) -> HashMap<(u64, i64), u64> {
    let mut out = HashMap::new();
    for e in events {
        let Event::Write { path, data, .. } = e else {
            continue;
        };
        if !is_segment(path) {
            continue;
        }
        for line in data.split(|&b| b == b'\n') {
            if let Some((seq, key, value)) = put(line) {
                out.insert((key, value), seq);
            }
        }
    }
    out
}

fn is_segment(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("journal-") && n.ends_with(".jsonl"))
}

/// A journal line's sequence number, key and value, if it is a put.
fn put(line: &[u8]) -> Option<(u64, u64, i64)> {
    let json: serde_json::Value = serde_json::from_slice(line).ok()?;
    let value = json.get("record")?.get("value")?.as_i64()?;
    Some((json["seq"].as_u64()?, json["key"].as_u64()?, value))
}

async fn check_state(state: &State, seqs: &HashMap<(u64, i64), u64>) -> Result<(), String> {
    let options = JournalOptions::default().segment_bytes(256 * 1024);
    let journal =
        Journal::open(state.dir(), options).map_err(|e| format!("refused to open: {e}"))?;
    // What the state holds, after recovery cut what it had to.
    let mut held = Vec::new();
    for f in std::fs::read_dir(state.dir()).unwrap() {
        let path = f.unwrap().path();
        if is_segment(&path) {
            for line in std::fs::read(&path).unwrap().split(|&b| b == b'\n') {
                let json: Option<serde_json::Value> = serde_json::from_slice(line).ok();
                held.extend(json.and_then(|j| j["seq"].as_u64()));
            }
        }
    }
    let first = held.iter().min().copied();
    // With no segment left, what the checkpoint reached: the next entry is
    // numbered past it.
    let reached = match first {
        Some(_) => 0,
        None => {
            let probe = Item {
                id: 0,
                value: 0,
                version: 1,
            };
            let write = Write::Insert(probe.to_record().unwrap());
            let seq = journal
                .append(Item::SCHEMA, &write)
                .await
                .map_err(|e| e.to_string())?;
            seq - 1
        }
    };
    journal.close().await.map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    for mark in &state.marks {
        let (key, value) = mark.split_once(' ').unwrap();
        let (key, value) = (key.parse().unwrap(), value.parse().unwrap());
        let Some(&seq) = seqs.get(&(key, value)) else {
            return Err(format!(
                "lost: no journal line ever held key {key} value {value}"
            ));
        };
        let replayed = first.map_or(seq <= reached, |f| seq < f);
        if !replayed && !held.contains(&seq) {
            lost.push(seq);
        }
    }
    if lost.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "lost acknowledged entries {lost:?} (the state holds {first:?}..)"
        ))
    }
}
