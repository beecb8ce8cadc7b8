//! Settings of a [`SqliteStore`](super::SqliteStore) and how its connections
//! are opened.

use std::path::Path;
use std::time::Duration;

use octopus::{Error, Result};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::sql;
use crate::url::StoreUrl;

/// How hard SQLite syncs a commit to disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// fsync on every commit, WAL included: a committed write survives power
    /// loss. The default.
    #[default]
    Full,
    /// WAL is synced at checkpoints only: a committed write survives a crash
    /// of the process, but the last commits may be lost on power loss.
    Normal,
}

/// Settings of a [`SqliteStore`](super::SqliteStore).
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    synchronous: Synchronous,
    busy_timeout: Duration,
    pub(super) readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(2),
            readers: 8,
        }
    }
}

impl SqliteOptions {
    /// Sync policy (default [`Synchronous::Full`]).
    pub fn synchronous(mut self, s: Synchronous) -> Self {
        self.synchronous = s;
        self
    }

    /// How long the writer waits for a lock held by another connection or
    /// process before the call fails with [`Error::Unavailable`]
    /// (default 2 s). This is the deadline of a write.
    pub fn busy_timeout(mut self, t: Duration) -> Self {
        self.busy_timeout = t;
        self
    }

    /// Read connections kept open for reuse (default 8; more are opened
    /// under load and closed afterwards).
    pub fn readers(mut self, n: usize) -> Self {
        self.readers = n;
        self
    }
}

impl SqliteOptions {
    /// Reads a `sqlite:` URL: the file's path (`None` for
    /// `sqlite::memory:`) and the `synchronous=full|normal` and
    /// `busy_timeout_ms` parameters. Everything between `sqlite://` and `?`
    /// is the path (an `@` included), but a `user:password@` is refused:
    /// SQLite has no login, and the path would carry the password into
    /// every error.
    pub(crate) fn from_url(url: &StoreUrl<'_>) -> Result<(Option<String>, Self)> {
        let mut options = SqliteOptions::default();
        for param in url.params() {
            options = match (param.name.as_str(), param.value.as_str()) {
                ("synchronous", "full") => options.synchronous(Synchronous::Full),
                ("synchronous", "normal") => options.synchronous(Synchronous::Normal),
                ("synchronous", v) => {
                    return Err(
                        url.error(format!("`synchronous` must be full or normal, got {v:?}"))
                    );
                }
                ("busy_timeout_ms", _) => {
                    options.busy_timeout(Duration::from_millis(url.whole(param)?))
                }
                _ => return Err(url.unknown(param, "synchronous=full|normal, busy_timeout_ms")),
            };
        }
        let expected = "expected sqlite://path/to/file.db or sqlite::memory:";
        if !url.has_authority() {
            return match url.location() {
                "sqlite::memory:" => Ok((None, options)),
                _ => Err(url.error(expected)),
            };
        }
        let path = match url.userinfo_as_written() {
            Some(info) if info.contains(':') => {
                return Err(url.error("sqlite:// takes no user or password: SQLite has no login"));
            }
            Some(user) => format!("{user}@{}", url.location()),
            None => url.location().to_owned(),
        };
        if path.is_empty() {
            return Err(url.error(expected));
        }
        Ok((Some(path), options))
    }
}

pub(crate) fn open_writer(
    path: Option<&Path>, options: &SqliteOptions, name: &str,
) -> Result<Connection> {
    let fail = |e| sql::classify(name, e);
    let conn = match path {
        Some(p) => Connection::open(p),
        None => Connection::open_in_memory(),
    }
    .map_err(fail)?;
    conn.busy_timeout(options.busy_timeout).map_err(fail)?;
    strict_quotes(&conn).map_err(fail)?;
    conn.set_prepared_statement_cache_capacity(128);
    if path.is_some() {
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::unavailable(
                name,
                format!("cannot switch to WAL mode (still {mode})"),
            ));
        }
    }
    let sync = match options.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"
    ))
    .map_err(fail)?;
    Ok(conn)
}

pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    // Inline reads must not wait: busy is handed to the writer thread.
    conn.busy_timeout(Duration::ZERO)?;
    strict_quotes(&conn)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Turns off SQLite's legacy double-quoted string literals: a quoted
/// identifier that names no column is then an error, never the string of
/// its name (a read of a column the table lacks would return `"note"` as
/// the value of `note`).
fn strict_quotes(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)?;
    Ok(())
}
