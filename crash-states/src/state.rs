//! Crash states: what the disk may hold after a power loss at a point of
//! the trace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Rng;

/// The size of the pages a power loss tears or zeroes.
const PAGE: usize = 4096;

/// One file operation of the traced run, or a mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `data` written at `offset` (not durable until a [`Event::Sync`]).
    Write {
        /// The file.
        path: PathBuf,
        /// Where in the file.
        offset: usize,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The file cut (or extended) to `len`.
    Truncate {
        /// The file.
        path: PathBuf,
        /// The new length.
        len: usize,
    },
    /// `fsync` or `fdatasync` of the file returned.
    Sync(PathBuf),
    /// A rename (atomic; durable in these states once it returned, as on
    /// the journaling filesystems this models with a synced directory).
    Rename(PathBuf, PathBuf),
    /// A file removed.
    Unlink(PathBuf),
    /// A file created (its name durable: the writer syncs the directory).
    Create(PathBuf),
    /// A whole line the process wrote to the marks file.
    Mark(String),
}

/// A crash state, materialized in a directory of its own (the files of the
/// traced directory, by name), and the marks written before it.
#[derive(Debug)]
pub struct State {
    dir: tempfile::TempDir,
    /// The marks written before the crash point, in order.
    pub marks: Vec<String>,
    /// Whether some write not yet synced reached the disk.
    pub with_unsynced: bool,
    /// Pages torn or zeroed in this state.
    pub damaged_pages: usize,
}

impl State {
    /// The state after `events` (a prefix of a trace), with a random subset
    /// of the unsynced writes.
    pub fn after(events: &[Event], rng: &mut Rng) -> State {
        let mut files = Files::default();
        let mut marks = Vec::new();
        for e in events {
            files.apply(e, &mut marks);
        }
        let (with_unsynced, damaged_pages) = files.lose_power(rng);
        let dir = tempfile::Builder::new()
            .prefix("crash-state-")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("a directory for the crash state");
        for (path, bytes) in &files.synced {
            let name = path.file_name().expect("traced files have names");
            std::fs::write(dir.path().join(name), bytes).expect("write the crash state");
        }
        State {
            dir,
            marks,
            with_unsynced,
            damaged_pages,
        }
    }

    /// Where the state's files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Files as the disk holds them (synced) and the writes since each file's
/// last sync.
#[derive(Default)]
struct Files {
    synced: BTreeMap<PathBuf, Vec<u8>>,
    unsynced: BTreeMap<PathBuf, Vec<Event>>,
}

impl Files {
    fn apply(&mut self, e: &Event, marks: &mut Vec<String>) {
        match e {
            Event::Create(p) => {
                self.synced.entry(p.clone()).or_default();
            }
            Event::Write { path, .. } | Event::Truncate { path, .. } => {
                self.unsynced
                    .entry(path.clone())
                    .or_default()
                    .push(e.clone());
            }
            Event::Sync(p) => {
                let file = self.synced.entry(p.clone()).or_default();
                for w in self.unsynced.remove(p).unwrap_or_default() {
                    write(file, &w);
                }
            }
            Event::Rename(from, to) => {
                if let Some(f) = self.synced.remove(from) {
                    self.synced.insert(to.clone(), f);
                }
                if let Some(u) = self.unsynced.remove(from) {
                    self.unsynced.insert(to.clone(), u);
                }
            }
            Event::Unlink(p) => {
                self.synced.remove(p);
                self.unsynced.remove(p);
            }
            Event::Mark(m) => marks.push(m.clone()),
        }
    }

    /// What reached the disk of what was not synced: any subset, in order,
    /// each write whole, cut at a page boundary, or one page zeroed.
    /// Whether any did, and how many pages were damaged.
    fn lose_power(&mut self, rng: &mut Rng) -> (bool, usize) {
        let (mut any, mut damaged) = (false, 0);
        for (path, writes) in std::mem::take(&mut self.unsynced) {
            let file = self.synced.entry(path).or_default();
            for w in writes {
                match (rng.below(4), &w) {
                    (0, _) => {}
                    (1, _) | (_, Event::Truncate { .. }) => {
                        write(file, &w);
                        any = true;
                    }
                    (_, Event::Write { path, offset, data }) => {
                        let mut data = data.clone();
                        let page_end = (offset / PAGE + 1) * PAGE;
                        let cut = (page_end - offset).min(data.len());
                        if rng.below(2) == 0 {
                            data.truncate(cut);
                        } else {
                            data[..cut].fill(0);
                        }
                        let torn = Event::Write {
                            path: path.clone(),
                            offset: *offset,
                            data,
                        };
                        write(file, &torn);
                        any = true;
                        damaged += 1;
                    }
                    _ => {}
                }
            }
        }
        (any, damaged)
    }
}

fn write(file: &mut Vec<u8>, event: &Event) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn w(offset: usize, data: &[u8]) -> Event {
        Event::Write {
            path: "/j/seg".into(),
            offset,
            data: data.to_vec(),
        }
    }

    #[test]
    fn synced_bytes_are_always_kept_and_unsynced_ones_sometimes() {
        let events = [
            Event::Create("/j/seg".into()),
            w(0, b"one\n"),
            Event::Sync("/j/seg".into()),
            Event::Mark("ack 1".into()),
            w(4, b"two\n"),
        ];
        let mut rng = Rng::new(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let s = State::after(&events, &mut rng);
            let bytes = std::fs::read(s.dir().join("seg")).unwrap();
            assert!(bytes.starts_with(b"one\n"), "{bytes:?}");
            assert_eq!(s.marks, ["ack 1"]);
            seen.insert(bytes);
        }
        // Without the unsynced write, with it whole, and with it zeroed.
        assert!(seen.contains(b"one\n".as_slice()), "{seen:?}");
        assert!(seen.contains(b"one\ntwo\n".as_slice()), "{seen:?}");
        assert!(seen.contains(b"one\n\0\0\0\0".as_slice()), "{seen:?}");
    }

    #[test]
    fn renames_and_unlinks_move_what_was_synced() {
        let events = [
            Event::Create("/j/a".into()),
            Event::Write {
                path: "/j/a".into(),
                offset: 0,
                data: b"x".to_vec(),
            },
            Event::Sync("/j/a".into()),
            Event::Rename("/j/a".into(), "/j/b".into()),
            Event::Create("/j/c".into()),
            Event::Unlink("/j/c".into()),
        ];
        let s = State::after(&events, &mut Rng::new(3));
        assert_eq!(std::fs::read(s.dir().join("b")).unwrap(), b"x");
        assert!(!s.dir().join("a").exists() && !s.dir().join("c").exists());
    }
}
