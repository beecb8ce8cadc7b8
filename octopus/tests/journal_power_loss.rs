//! Power loss, from a real run's file operations: a child process appends
//! to a journal (fsync durability) from 8 tasks under `strace`, writing
//! `ack <id>` to a marks file as each append is acknowledged. The trace
//! (read by the `crash-states` crate) gives every write,
//! sync, truncate, rename and unlink on the journal's files, and every
//! acknowledgement, in completion order. At crash points along it, crash
//! states are materialized: every synced byte, plus a random subset of the
//! writes not yet synced, each whole, torn at a page boundary, or a page of
//! zeros. Every state must open, and hold every entry acknowledged before
//! the crash point.
//!
//! The same harness, run on a journal without fsync (`Durability::None`),
//! must find states that lose acknowledged entries: it can see loss.
//!
//! One binary plays both parts (`harness = false`): with
//! `OCTOPUS_POWER_CHILD=<dir>` it is the appender. Needs `strace`.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crash_states::{Event, Rng, State};

use octopus::journal::{Durability, Journal, JournalOptions, Pending};
use octopus::{Key, Model};

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "power")]
struct Item {
    #[octopus(key)]
    id: u64,
    payload: String,
}

const CHILD: &str = "OCTOPUS_POWER_CHILD";
const UNSYNCED: &str = "OCTOPUS_POWER_UNSYNCED";
const APPENDS: u64 = 1200;

fn options(synced: bool) -> JournalOptions {
    let durability = if synced {
        Durability::Fsync
    } else {
        Durability::None
    };
    JournalOptions::default()
        .segment_bytes(32 * 1024)
        .durability(durability)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(dir) = std::env::var(CHILD) {
        runtime.block_on(child(dir, std::env::var(UNSYNCED).is_err()));
        return;
    }
    runtime.block_on(async {
        let synced = run(true, 1500);
        assert_eq!(synced.lost_states, 0, "{synced:?}");
        assert_eq!(synced.refused, 0, "{synced:?}");
        assert!(synced.states >= 1000, "{synced:?}");
        let unsynced = run(false, 300);
        assert!(
            unsynced.lost_states > 0,
            "without fsync some crash state must lose acknowledged entries: the harness cannot see loss ({unsynced:?})"
        );
        println!(
            "journal power loss: {} crash states from {} traced operations, {} acknowledged appends: 0 refused to open, 0 lost an acknowledged entry ({} with unsynced writes, {} torn or zeroed pages); without fsync, {} of {} states lost acknowledged entries",
            synced.states,
            synced.events,
            synced.acks,
            synced.with_unsynced,
            synced.damaged_pages,
            unsynced.lost_states,
            unsynced.states
        );
    });
}

/// Appends `APPENDS` items from 8 tasks, writing `ack <id>` to the marks
/// file beside the journal after each.
async fn child(dir: String, synced: bool) {
    let journal = Journal::open(&dir, options(synced)).unwrap();
    let acks = Arc::new(Mutex::new(
        std::fs::File::create(marks(Path::new(&dir))).unwrap(),
    ));
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (journal, next, acks) = (journal.clone(), next.clone(), acks.clone());
            tokio::spawn(async move {
                loop {
                    let id = next.fetch_add(1, Ordering::SeqCst);
                    if id >= APPENDS {
                        return;
                    }
                    let item = Item {
                        id,
                        payload: "p".repeat((id % 700) as usize),
                    };
                    let write = octopus::Write::Insert(item.to_record().unwrap());
                    journal.append(Item::SCHEMA, &write).await.unwrap();
                    let line = format!("ack {id}\n");
                    acks.lock().unwrap().write_all(line.as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    journal.close().await.unwrap();
}

/// The marks file of the journal at `dir`.
fn marks(dir: &Path) -> std::path::PathBuf {
    dir.with_file_name("acks")
}

#[derive(Debug, Default)]
struct Outcome {
    events: usize,
    acks: usize,
    states: usize,
    refused: usize,
    lost_states: usize,
    with_unsynced: usize,
    damaged_pages: usize,
}

/// Traces a child run, then opens crash states along the trace.
fn run(synced: bool, states: usize) -> Outcome {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("journal");
    let trace = work.path().join("trace");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CHILD, &dir);
    if !synced {
        cmd.env(UNSYNCED, "1");
    }
    let out = crash_states::traced(cmd, &trace)
        .output()
        .expect("this test runs `strace` (apt-get install strace)");
    assert!(
        out.status.success(),
        "the traced child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    let events = crash_states::parse(&text, &dir, &marks(&dir));
    let acks = events
        .iter()
        .filter(|e| matches!(e, Event::Mark(_)))
        .count();
    assert_eq!(
        acks as u64, APPENDS,
        "every append was acknowledged in the trace"
    );
    let mut outcome = Outcome {
        events: events.len(),
        acks,
        ..Outcome::default()
    };
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ states as u64);
    for _ in 0..states {
        let at = rng.below(events.len() as u64 + 1) as usize;
        let state = State::after(&events[..at], &mut rng);
        check_state(&state, at, synced, &mut outcome);
    }
    outcome
}

/// Opens one crash state and checks it holds every acknowledged entry.
fn check_state(state: &State, at: usize, synced: bool, outcome: &mut Outcome) {
    outcome.states += 1;
    outcome.with_unsynced += usize::from(state.with_unsynced);
    outcome.damaged_pages += state.damaged_pages;
    // Opened as it was written: recovery's cut rule depends on it.
    let journal = match Journal::open(state.dir(), options(synced)) {
        Ok(j) => j,
        Err(e) => {
            outcome.refused += 1;
            if outcome.refused <= 3 {
                eprintln!("a crash state after {at} events refused to open: {e}");
            }
            return;
        }
    };
    let lost: Vec<u64> = state
        .marks
        .iter()
        .map(|m| m.strip_prefix("ack ").unwrap().parse().unwrap())
        .filter(|id| {
            !matches!(
                journal.lookup(Item::SCHEMA, &Key::UInt(*id)),
                Ok(Some(Pending::Put(_)))
            )
        })
        .collect();
    if !lost.is_empty() {
        outcome.lost_states += 1;
        if synced && outcome.lost_states <= 3 {
            eprintln!(
                "a crash state after {at} events lost {} acknowledged entries (first: {:?})",
                lost.len(),
                &lost[..lost.len().min(5)]
            );
        }
    }
}
