//! Octopus: a persistence layer that keeps serving reads and accepting writes
//! while its database is down.
//!
//! Annotate a plain struct with `#[derive(Model)]`, pick a [`Plan`] (a primary
//! store plus caches), and use the typed [`Dao`]:
//!
//! ```
//! use octopus::{Dao, MemoryStore, Model, Plan};
//! use std::sync::Arc;
//!
//! #[derive(Debug, Clone, PartialEq, Model)]
//! #[octopus(table = "books")]
//! struct Book {
//!     #[octopus(key)]
//!     id: uuid::Uuid,           // nil on create => a fresh UUIDv7
//!     title: String,
//!     author: Option<String>,   // nullable column
//!     #[octopus(version)]
//!     version: u64,             // optimistic concurrency
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // The backends come from `octopus-adapters` (SQLite, MySQL, memcached);
//! // the in-process store needs none.
//! let plan = Arc::new(Plan::new(MemoryStore::new()).with_cache(MemoryStore::new()));
//! let books: Dao<Book> = Dao::open(plan).await?;
//!
//! let mut book = Book { id: uuid::Uuid::nil(), title: "Dune".into(), author: None, version: 0 };
//! books.create(&mut book).await?;
//! assert!(!book.id.is_nil());
//!
//! book.author = Some("Frank Herbert".into());
//! books.update(&mut book).await?;
//! assert_eq!(books.read(book.id).await?, Some(book.clone()));
//!
//! assert_eq!(books.delete(book.id).await?, octopus::Deletion::Deleted);
//! assert_eq!(books.read(book.id).await?, None);
//! # Ok::<(), octopus::Error>(())
//! # }).unwrap();
//! ```
//!
//! # The derive
//!
//! `#[derive(Model)]` accepts, on the struct, `#[octopus(table = "name")]`
//! (default: the struct's name in snake_case, `BookReview` -> `book_review`),
//! and on fields:
//!
//! | attribute | meaning |
//! |---|---|
//! | `key` | the primary key (exactly one; `String`, `uuid::Uuid` or an integer). An empty `String` or nil `Uuid` gets a UUIDv7 on create. |
//! | `rename = "col"` | the column name (an identifier: letters, digits, `_`) |
//! | `skip` | not persisted; the type must implement `Default` |
//! | `json` | any serde type, stored as JSON text |
//! | `version` | an integer bumped by every update; updates are conditional on it |
//! | `created_at` | `i64` unix milliseconds, set by `create` and never changed by `update` |
//! | `updated_at` | `i64` unix milliseconds, set by every write |
//!
//! Plain field types are `bool`, `i8`..`i64`, `u8`..`u64` (the whole `u64`
//! range survives every store), `f32`, `f64`, `String`, `Vec<u8>`,
//! `uuid::Uuid`, and `Option` of these (a nullable column). Every misuse is a
//! compile error pointing at the offending token.
//!
//! Floats are stored as given, bit for bit, NaN and infinities included, in
//! stores that can hold them, and through the journal; see each store's
//! documentation (SQLite turns NaN into NULL, so a NaN in a non-nullable
//! column is refused there with a clear error; SQLite and MySQL store `-0.0`
//! as `0.0`, which compares equal).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate self as octopus;

mod breaker;
mod cache;
mod chain;
mod change;
pub mod config;
mod dao;
mod error;
mod fallback;
mod flight;
pub mod journal;
mod memory;
pub mod migrate;
mod model;
mod plan;
mod registry;
mod retry;
mod schema;
mod stats;
mod store;
mod timestamp;
mod value;

pub use breaker::{BreakerOptions, BreakerSnapshot, BreakerState, CircuitBreaker, Permit};
pub use cache::{Cache, FillToken, Lookup};
pub use chain::FallbackChain;
pub use chain::claims::{CLAIM_POLL, Claim, KeyClaims};
pub use change::{Change, Precondition};
pub use dao::Dao;
pub use error::{BoxError, Error, Result};
pub use fallback::{
    CacheInvalidation, Deletion, FailFast, Fallback, FallbackStats, Mode, Write, WriteOutcome,
};
pub use memory::{CACHE_TTL, MemoryOptions, MemoryStore};
pub use model::{Field, KeyField, Model, NotNull, VersionField, now_millis};
pub use octopus_derive::Model;
pub use plan::{CachePolicy, Plan, PlanBuilder, Plans};
pub use registry::HasDao;
pub use schema::{Column, ColumnType, Schema, is_valid_identifier};
pub use stats::{LevelStats, PlanStats};
pub use store::{BoxFuture, Store, check_key, check_record, key_of, normalize_key, version_of};
pub use timestamp::TimestampField;
pub use value::{Key, Record, Value};

/// Paths the derive's generated code uses; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::model::private::*;
    pub use crate::timestamp::TimestampField;
}

/// A one-column model for the crate's unit tests.
#[cfg(test)]
#[derive(crate::Model)]
pub(crate) struct TestRow {
    #[octopus(key)]
    id: u64,
}
