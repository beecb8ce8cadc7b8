//! Power-loss crash states, from a real run's file operations.
//!
//! A process runs under `strace` ([`traced`]), which records every write,
//! sync, truncate, rename and unlink on the files of one directory, and
//! every line the process writes to a *marks* file (what it acknowledged,
//! say), in completion order. [`parse`] turns the trace into [`Event`]s. At
//! any point along them, [`State::after`] materializes a crash state: every
//! synced byte, plus a random subset of the writes not yet synced, each
//! whole, torn at a page boundary, or with a page of zeros, as a disk may
//! hold them after a power loss. The caller opens the state and checks it
//! keeps what was marked before the crash point.
//!
//! ```no_run
//! use crash_states::{Rng, State, parse, traced};
//!
//! let work = std::path::Path::new("/tmp/run");
//! let status = traced(std::process::Command::new("my-appender"), &work.join("trace"))
//!     .status()
//!     .unwrap();
//! assert!(status.success());
//! let text = std::fs::read_to_string(work.join("trace")).unwrap();
//! let events = parse(&text, &work.join("journal"), &work.join("acks"));
//! let mut rng = Rng::new(7);
//! let state = State::after(&events[..events.len() / 2], &mut rng);
//! println!("{} acknowledged before the crash", state.marks.len());
//! // open `state.dir()` and check it holds them
//! ```

mod parse;
mod state;

pub use parse::{parse, traced};
pub use state::{Event, State};

/// A small seeded random source (xorshift), so a failing state can be
/// built again.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed` (any value; 0 is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
