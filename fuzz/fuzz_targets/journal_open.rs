//! Recovery over arbitrary segment and checkpoint bytes: `Journal::open`
//! must return (Ok or an error), never panic.
//!
//! Input layout (missing bytes read as zero, lengths clamped to what is
//! left):
//!
//! | bytes | meaning |
//! |-------|---------|
//! | 1     | flags: bit 0 write `checkpoint`; bit 1 wrap it in the two-slot file format; bit 2 (with bit 1) put the second half of the checkpoint part in slot 1 instead of the whole part in both; bit 3 write the second segment; bit 4 leave out the first segment |
//! | 2     | checkpoint part length (u16 LE) |
//! | n     | checkpoint part |
//! | 8     | the second segment's first sequence number (u64 LE, any value) |
//! | 2     | first segment length (u16 LE) |
//! | n     | `journal-00000000000000000001.jsonl` |
//! | rest  | the second segment, `journal-<number:020>.jsonl` |
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use octopus::journal::{Journal, JournalOptions};

/// The two-slot checkpoint file's header line prefix, header size and
/// smallest slot (see `octopus/src/journal/slots.rs`).
const MAGIC: &str = "octopus checkpoint, two slots of";
const HEADER: usize = 64;
const SLOT: usize = 65536;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn u16(&mut self) -> usize {
        let mut b = [0u8; 2];
        let got = self.take(2);
        b[..got.len()].copy_from_slice(got);
        usize::from(u16::from_le_bytes(b))
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.take(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(b)
    }
}

fn slotted(slot0: &[u8], slot1: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{MAGIC} {SLOT}\n").into_bytes();
    bytes.resize(HEADER, b'\n');
    for slot in [slot0, slot1] {
        let start = bytes.len();
        bytes.extend_from_slice(&slot[..slot.len().min(SLOT)]);
        bytes.resize(start + SLOT, b'\n');
    }
    bytes
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("octopus-fuzz-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temporary directory")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write fuzz input file");
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.take(1).first().copied().unwrap_or(0);
    let checkpoint_len = input.u16();
    let checkpoint = input.take(checkpoint_len);
    let second_seq = input.u64();
    let first_len = input.u16();
    let first = input.take(first_len);
    let second = input.0;

    let dir = tempdir();
    let path = dir.path();
    if flags & 1 != 0 {
        let bytes = if flags & 2 != 0 {
            if flags & 4 != 0 {
                let (a, b) = checkpoint.split_at(checkpoint.len() / 2);
                slotted(a, b)
            } else {
                slotted(checkpoint, checkpoint)
            }
        } else {
            checkpoint.to_vec()
        };
        write(path, "checkpoint", &bytes);
    }
    if flags & 16 == 0 {
        write(path, "journal-00000000000000000001.jsonl", first);
    }
    if flags & 8 != 0 {
        write(path, &format!("journal-{second_seq:020}.jsonl"), second);
    }

    if let Ok(journal) = Journal::open(path, JournalOptions::default()) {
        let _ = journal.pending();
        // The last handle: dropping it stops the writer thread and waits
        // for it, releasing the directory lock.
        drop(journal);
    }
});
