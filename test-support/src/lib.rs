//! What Octopus's test crates share, in one place instead of a copy per test
//! crate:
//!
//! - [`Scripted`], a store whose calls fail, slow down or stop on cue, for
//!   plan, breaker and journal tests;
//! - [`eventually`] and [`poll_until`], the one way a test waits for a
//!   condition: polling with a deadline, failing with what it last saw;
//! - [`Rng`] and [`bit_patterns`], small seeded random sources;
//! - [`history`], a checker of recorded histories of one register per key
//!   (linearizability, per key) for the chaos tests;
//! - [`quick_breaker`], breaker settings under which outages start and end
//!   within a test's few calls, and [`until_drained`];
//! - with feature `mysql`, fixtures of the shared MariaDB server (a fresh
//!   database per test) and of MariaDB servers of a test's own (`mysql`);
//! - with feature `memcache`, fixtures of the shared memcached server (a
//!   fresh namespace per test) and of memcached processes of a test's own
//!   (`memcache`);
//! - with feature `nats`, nats-server processes of a test's own with
//!   JetStream (`nats`).
//!
//! A server a fixture needs that does not answer fails the test with a
//! message saying how to start it; nothing is skipped.
//!
//! `octopus` itself dev-depends on this crate: its integration tests link the
//! one `octopus` library this crate is built against, so the types line up.
//! (Its unit tests must not use this crate: they are built from a second copy
//! of `octopus`.)

pub mod history;
mod plan;
mod rng;
mod scripted;
mod wait;

#[cfg(feature = "memcache")]
pub mod memcache;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use plan::{quick_breaker, until_drained};
pub use rng::{Rng, bit_patterns};
pub use scripted::{Scripted, Step};
pub use wait::{check, eventually, poll_until};
