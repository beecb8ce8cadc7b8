//! Storage backends for [Octopus](octopus), each behind a cargo feature.
//!
//! | feature | module | backend |
//! |---|---|---|
//! | `sqlite` (default) | `sqlite` | SQLite through rusqlite, bundled |
//! | `mysql` | `mysql` | MySQL / MariaDB through mysql_async |
//! | `memcache` | `memcache` | memcached through the memcache crate's async meta-protocol client |
//!
//! ```
//! use octopus::{Dao, MemoryStore, Model, Plan};
//! use octopus_adapters::sqlite::SqliteStore;
//! use std::sync::Arc;
//!
//! #[derive(Debug, PartialEq, Model)]
//! struct Note { #[octopus(key)] id: u64, text: String }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let sqlite = SqliteStore::open(dir.path().join("notes.db")).await?;
//! let notes: Dao<Note> = Dao::open(Arc::new(Plan::new(sqlite).with_cache(MemoryStore::new()))).await?;
//! notes.create(&mut Note { id: 1, text: "hello".into() }).await?;
//! assert_eq!(notes.read(1).await?.unwrap().text, "hello");
//! # Ok::<(), octopus::Error>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "mysql", feature = "postgres"))]
mod checked;
pub mod config;
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
mod existing_table;
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
mod failure;
mod fallback;
#[cfg(any(feature = "mysql", feature = "postgres"))]
mod limits;
mod lock;
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "postgres"))]
mod per_schema;
pub mod probe;
mod url;

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

#[cfg(feature = "memcache")]
#[cfg_attr(docsrs, doc(cfg(feature = "memcache")))]
pub mod memcache;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;

/// The README's code, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}

/// `Debug` of a store handle: its type and its name, never its URL (which
/// may hold a password) or its connections.
#[cfg(any(feature = "sqlite", feature = "memcache"))]
fn debug_store(f: &mut std::fmt::Formatter<'_>, ty: &str, name: &str) -> std::fmt::Result {
    f.debug_struct(ty)
        .field("name", &name)
        .finish_non_exhaustive()
}
