//! Power loss, from a real run's file operations: a child process appends
//! to a journal (fsync durability) from 8 tasks under `strace`, printing
//! `ack <id>` as each append is acknowledged. The trace gives every write,
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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
const PAGE: usize = 4096;

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

/// Appends `APPENDS` items from 8 tasks, printing `ack <id>` after each.
async fn child(dir: String, synced: bool) {
    let journal = Journal::open(&dir, options(synced)).unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (journal, next) = (journal.clone(), next.clone());
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
                    println!("ack {id}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    journal.close().await.unwrap();
}

/// One file operation of the traced run, or an acknowledgement.
#[derive(Debug, Clone)]
enum Event {
    Write {
        path: PathBuf,
        offset: usize,
        data: Vec<u8>,
    },
    Truncate {
        path: PathBuf,
        len: usize,
    },
    Sync(PathBuf),
    Rename(PathBuf, PathBuf),
    Unlink(PathBuf),
    Create(PathBuf),
    Ack(u64),
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
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-y", "-xx", "-s", "8388608", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=openat,write,writev,pwrite64,fsync,fdatasync,ftruncate,rename,renameat,renameat2,unlink,unlinkat",
        ])
        .arg(&exe)
        .env(CHILD, &dir);
    if !synced {
        cmd.env(UNSYNCED, "1");
    }
    let out = cmd
        .output()
        .expect("this test runs `strace` (apt-get install strace)");
    assert!(
        out.status.success(),
        "the traced child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::fs::canonicalize(&dir).unwrap();
    let events = parse(&std::fs::read_to_string(&trace).unwrap(), &dir);
    let acks = events.iter().filter(|e| matches!(e, Event::Ack(_))).count();
    assert_eq!(
        acks as u64, APPENDS,
        "every append was acknowledged in the trace"
    );
    let mut outcome = Outcome {
        events: events.len(),
        acks,
        ..Outcome::default()
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ states as u64);
    for _ in 0..states {
        let at = rng.below(events.len() as u64 + 1) as usize;
        check_state(&events[..at], synced, &mut rng, &mut outcome);
    }
    outcome
}

/// Files as the disk holds them (synced) and as the page cache does, with
/// the writes since each file's last sync.
#[derive(Default)]
struct Files {
    synced: BTreeMap<PathBuf, Vec<u8>>,
    unsynced: BTreeMap<PathBuf, Vec<Event>>,
}

fn apply(file: &mut Vec<u8>, event: &Event) {
    match event {
        Event::Write { offset, data, .. } => {
            if file.len() < offset + data.len() {
                file.resize(offset + data.len(), 0);
            }
            file[*offset..offset + data.len()].copy_from_slice(data);
        }
        Event::Truncate { len, .. } => file.resize(*len, 0),
        _ => {}
    }
}

/// Builds one crash state after `events`, opens it, and checks it.
fn check_state(events: &[Event], synced: bool, rng: &mut Rng, outcome: &mut Outcome) {
    let mut files = Files::default();
    let mut acked = Vec::new();
    for e in events {
        match e {
            Event::Create(p) => {
                files.synced.entry(p.clone()).or_default();
            }
            Event::Write { path, .. } | Event::Truncate { path, .. } => {
                files
                    .unsynced
                    .entry(path.clone())
                    .or_default()
                    .push(e.clone());
            }
            Event::Sync(p) => {
                let file = files.synced.entry(p.clone()).or_default();
                for w in files.unsynced.remove(p).unwrap_or_default() {
                    apply(file, &w);
                }
            }
            Event::Rename(from, to) => {
                if let Some(f) = files.synced.remove(from) {
                    files.synced.insert(to.clone(), f);
                }
                if let Some(u) = files.unsynced.remove(from) {
                    files.unsynced.insert(to.clone(), u);
                }
            }
            Event::Unlink(p) => {
                files.synced.remove(p);
                files.unsynced.remove(p);
            }
            Event::Ack(id) => acked.push(*id),
        }
    }
    // What reached the disk of what was not synced: any subset, in order,
    // each write whole, cut at a page boundary, or one page zeroed.
    let mut any_unsynced = false;
    for (path, writes) in &files.unsynced {
        let file = files.synced.entry(path.clone()).or_default();
        for w in writes {
            match rng.below(4) {
                0 => {}
                1 => {
                    apply(file, w);
                    any_unsynced = true;
                }
                _ => {
                    let Event::Write { offset, data, .. } = w else {
                        apply(file, w);
                        continue;
                    };
                    let mut data = data.clone();
                    let page_end = (offset / PAGE + 1) * PAGE;
                    let cut = (page_end - offset).min(data.len());
                    if rng.below(2) == 0 {
                        data.truncate(cut);
                    } else {
                        data[..cut].fill(0);
                    }
                    apply(
                        file,
                        &Event::Write {
                            path: path.clone(),
                            offset: *offset,
                            data,
                        },
                    );
                    any_unsynced = true;
                    outcome.damaged_pages += 1;
                }
            }
        }
    }
    outcome.with_unsynced += usize::from(any_unsynced);
    let state = tempfile::Builder::new()
        .prefix("octopus-power-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    for (path, bytes) in &files.synced {
        std::fs::write(state.path().join(path.file_name().unwrap()), bytes).unwrap();
    }
    outcome.states += 1;
    // Opened as it was written: recovery's cut rule depends on it.
    let journal = match Journal::open(state.path(), options(synced)) {
        Ok(j) => j,
        Err(e) => {
            outcome.refused += 1;
            if outcome.refused <= 3 {
                eprintln!(
                    "a crash state after {} events refused to open: {e}",
                    events.len()
                );
            }
            return;
        }
    };
    let lost: Vec<u64> = acked
        .iter()
        .copied()
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
                "a crash state after {} events lost {} acknowledged entries (first: {:?})",
                events.len(),
                lost.len(),
                &lost[..lost.len().min(5)]
            );
        }
    }
}

/// Parses strace's output (`-f -y -xx`): the events on files in `dir`, and
/// the child's `ack` lines, in completion order.
fn parse(trace: &str, dir: &Path) -> Vec<Event> {
    let mut pending: HashMap<String, String> = HashMap::new();
    // File descriptors are the process's (any thread may use one).
    let mut positions: HashMap<String, usize> = HashMap::new();
    let mut appending: HashMap<String, bool> = HashMap::new();
    let mut sizes: HashMap<PathBuf, usize> = HashMap::new();
    // The child's standard output so far, for its `ack` lines.
    let mut stdout = String::new();
    let mut out = Vec::new();
    for raw in trace.lines() {
        let Some((pid, rest)) = raw.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let line = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_owned(), head.to_owned());
            continue;
        } else if rest.starts_with("<... ") {
            let tail = rest.split_once("resumed>").map_or("", |(_, t)| t);
            format!("{}{}", pending.remove(pid).unwrap_or_default(), tail)
        } else {
            rest.to_owned()
        };
        // strace pads short calls before ` = result`.
        let Some(eq) = line.rfind(" = ") else {
            continue;
        };
        let (call, result) = (line[..eq].trim_end(), &line[eq + 3..]);
        let Some(call) = call.strip_suffix(')') else {
            continue;
        };
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        if result.starts_with('-') {
            continue;
        }
        let args = split_args(args);
        let in_dir = |p: &Path| p.starts_with(dir) && p != dir;
        match name {
            "openat" => {
                let Some((fd, path)) = annotated(result) else {
                    continue;
                };
                if !in_dir(&path) {
                    continue;
                }
                let flags = args.get(2).map_or("", String::as_str);
                let key = fd.clone();
                positions.insert(key.clone(), 0);
                appending.insert(key, flags.contains("O_APPEND"));
                if flags.contains("O_CREAT") && !sizes.contains_key(&path) {
                    sizes.insert(path.clone(), 0);
                    out.push(Event::Create(path.clone()));
                }
                if flags.contains("O_TRUNC") {
                    sizes.insert(path.clone(), 0);
                    out.push(Event::Truncate { path, len: 0 });
                }
            }
            "writev" if annotated(&args[0]).is_some_and(|(fd, _)| fd == "1") => {
                let data: Vec<u8> = quoted(&args[1..]).into_iter().flatten().collect();
                acks(&mut stdout, &data, &mut out);
            }
            "write" | "pwrite64" => {
                let Some((fd, path)) = annotated(&args[0]) else {
                    continue;
                };
                let data = unescape(&args[1]);
                if fd == "1" {
                    acks(&mut stdout, &data, &mut out);
                    continue;
                }
                if !in_dir(&path) {
                    continue;
                }
                let written: usize = result.trim().parse().unwrap();
                let data = data[..written].to_vec();
                let key = fd.clone();
                let size = sizes.entry(path.clone()).or_default();
                let offset = if name == "pwrite64" {
                    args[3].trim().parse().unwrap()
                } else if appending.get(&key).copied().unwrap_or(false) {
                    *size
                } else {
                    let pos = positions.entry(key.clone()).or_default();
                    let at = *pos;
                    *pos += written;
                    at
                };
                *size = (*size).max(offset + written);
                out.push(Event::Write { path, offset, data });
            }
            "fsync" | "fdatasync" => {
                let Some((_, path)) = annotated(&args[0]) else {
                    continue;
                };
                if in_dir(&path) {
                    out.push(Event::Sync(path));
                }
            }
            "ftruncate" => {
                let Some((_, path)) = annotated(&args[0]) else {
                    continue;
                };
                if in_dir(&path) {
                    let len = args[1].trim().parse().unwrap();
                    sizes.insert(path.clone(), len);
                    out.push(Event::Truncate { path, len });
                }
            }
            "rename" | "renameat" | "renameat2" => {
                let paths: Vec<PathBuf> = args
                    .iter()
                    .filter(|a| a.starts_with('"'))
                    .map(|a| PathBuf::from(String::from_utf8(unescape(a)).unwrap()))
                    .collect();
                if let [from, to] = &paths[..]
                    && in_dir(to)
                {
                    if let Some(s) = sizes.remove(from) {
                        sizes.insert(to.clone(), s);
                    }
                    out.push(Event::Rename(from.clone(), to.clone()));
                }
            }
            "unlink" | "unlinkat" => {
                let Some(arg) = args.iter().find(|a| a.starts_with('"')) else {
                    continue;
                };
                let path = PathBuf::from(String::from_utf8(unescape(arg)).unwrap());
                if in_dir(&path) {
                    sizes.remove(&path);
                    out.push(Event::Unlink(path));
                }
            }
            _ => {}
        }
    }
    out
}

/// Adds `data` written to the child's standard output, and an event for
/// each `ack` line it completes.
fn acks(stdout: &mut String, data: &[u8], out: &mut Vec<Event>) {
    stdout.push_str(&String::from_utf8_lossy(data));
    while let Some(end) = stdout.find('\n') {
        let line: String = stdout.drain(..=end).collect();
        if let Some(id) = line.trim().strip_prefix("ack ") {
            out.push(Event::Ack(id.parse().unwrap()));
        }
    }
}

/// The quoted strings in `args` (a `writev`'s buffers), unescaped.
fn quoted(args: &[String]) -> Vec<Vec<u8>> {
    let text = args.join(",");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        out.push(unescape(&after[..end]));
        rest = &after[end + 1..];
    }
    out
}

/// The arguments of a call, split at top-level commas.
fn split_args(args: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut quoted, mut depth) = (false, 0);
    let mut chars = args.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                out.last_mut().unwrap().push(c);
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
                continue;
            }
            '"' => quoted = !quoted,
            '<' | '[' | '{' if !quoted => depth += 1,
            '>' | ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        out.last_mut().unwrap().push(c);
    }
    out.into_iter().map(|a| a.trim().to_owned()).collect()
}

/// `3</path>` (the path hex-escaped, as `-xx` prints it) → `("3", "/path")`.
fn annotated(text: &str) -> Option<(String, PathBuf)> {
    let (fd, rest) = text.trim().split_once('<')?;
    let path = rest.strip_suffix('>')?;
    let path = String::from_utf8(unescape(path)).ok()?;
    Some((fd.to_owned(), PathBuf::from(path)))
}

/// A `-xx` string argument (`"\x7b\x22..."`, possibly followed by `...`).
fn unescape(arg: &str) -> Vec<u8> {
    let inner = arg.trim().trim_end_matches("...");
    let inner = inner
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(inner);
    let bytes = inner.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') && i + 3 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// A small seeded random source (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
