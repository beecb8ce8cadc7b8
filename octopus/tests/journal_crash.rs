//! Crash safety of the journal: a child process appends with fsync
//! durability and reports each acknowledged write; the parent SIGKILLs it at
//! random moments, 20 times, and after each kill reopens the journal and
//! checks that every acknowledged write is there and the torn tail is gone.
//!
//! One binary plays both parts (`harness = false`): run with
//! `OCTOPUS_CRASH_CHILD=<dir>` it is the appender.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use octopus::journal::{Journal, JournalOptions, Pending};
use octopus::{Key, Model};
use octopus_test_support::Rng;

#[derive(Debug, Clone, PartialEq, Model)]
#[octopus(table = "crash")]
struct Item {
    #[octopus(key)]
    id: u64,
    payload: String,
}

const CHILD: &str = "OCTOPUS_CRASH_CHILD";
/// Set in a child that only tries to open the journal and reports how it went.
const OPEN_ONLY: &str = "OCTOPUS_CRASH_OPEN_ONLY";
const BASE: &str = "OCTOPUS_CRASH_BASE";
const KILLS: usize = 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(dir) = std::env::var(OPEN_ONLY) {
        match Journal::open(&dir, JournalOptions::default()) {
            Ok(_) => println!("opened"),
            Err(e) => println!("refused: {e}"),
        }
        return;
    }
    match std::env::var(CHILD) {
        Ok(dir) => runtime.block_on(child(dir)),
        Err(_) => {
            runtime.block_on(parent());
            runtime.block_on(second_process_is_refused());
        }
    }
}

/// While this process has the journal open, another process gets a clear
/// error; once it is closed, the other process can open it.
async fn second_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let try_open = || {
        let out = Command::new(&exe)
            .env(OPEN_ONLY, dir.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let answer = try_open();
    assert!(
        answer.starts_with("refused: journal") && answer.contains("open in another process"),
        "{answer}"
    );
    drop(journal);
    assert_eq!(try_open().trim(), "opened");
    println!("journal lock: a second process was refused while the journal was open");
}

/// Appends forever from 8 tasks, printing `ack <id>` once each append is
/// acknowledged (durable).
async fn child(dir: String) {
    let base: u64 = std::env::var(BASE).unwrap().parse().unwrap();
    let journal = Journal::open(&dir, JournalOptions::default().segment_bytes(64 * 1024)).unwrap();
    let next = Arc::new(AtomicU64::new(base));
    let mut tasks: Vec<_> = (0..8)
        .map(|_| {
            let (journal, next) = (journal.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let id = next.fetch_add(1, Ordering::SeqCst);
                    let item = Item {
                        id,
                        payload: "x".repeat((id % 300) as usize),
                    };
                    journal
                        .append(
                            Item::SCHEMA,
                            &octopus::Write::Insert(item.to_record().unwrap()),
                        )
                        .await
                        .unwrap();
                    println!("ack {id}");
                }
            })
        })
        .collect();
    // The tasks never end: the parent kills this process.
    if let Some(t) = tasks.pop() {
        t.await.unwrap();
    }
}

async fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(Rng::clock_seed());
    let exe = std::env::current_exe().unwrap();
    let mut acked_total = 0usize;
    let mut torn = 0usize;
    for round in 0..KILLS {
        let base = round as u64 * 1_000_000;
        let mut child = Command::new(&exe)
            .env(CHILD, dir.path())
            .env(BASE, base.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("ack ") {
                    acked.push(id.parse::<u64>().unwrap());
                    if acked.len() == 1 {
                        let _ = first_tx.send(());
                    }
                }
            }
            acked
        });
        // Let it get going, then kill it at a random moment.
        first_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the child acknowledged nothing");
        std::thread::sleep(Duration::from_millis(1 + rng.below(40)));
        child.kill().unwrap(); // SIGKILL: no chance to flush or clean up
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        assert!(!acked.is_empty());

        let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        torn += usize::from(journal.torn_tail().is_some());
        for id in &acked {
            match journal.lookup(Item::SCHEMA, &Key::UInt(*id)).unwrap() {
                Some(Pending::Put(r)) => assert_eq!(Item::from_record(r).unwrap().id, *id),
                other => {
                    panic!("round {round}: acknowledged write {id} lost after SIGKILL: {other:?}")
                }
            }
        }
        drop(journal);
        let again = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        assert!(
            again.torn_tail().is_none(),
            "round {round}: the torn tail was not removed"
        );
        drop(again);
        acked_total += acked.len();
    }
    println!(
        "journal crash test: {KILLS} SIGKILLs, {acked_total} acknowledged appends, all recovered; {torn} torn tails truncated"
    );
}
