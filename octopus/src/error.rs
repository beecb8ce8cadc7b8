//! The one error type of Octopus.

use std::error::Error as StdError;
use std::fmt::Display;
use std::path::PathBuf;

/// A boxed error from a backend driver, kept as the source of
/// [`Error::Unavailable`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Octopus, grouped by what a caller can do
/// about it.
///
/// Two classes matter for resilience: [`Error::Unavailable`] means a backend
/// could not be reached in time (it may succeed later; it is what trips a
/// circuit breaker), while every other variant means the request itself was
/// refused and retrying it unchanged will fail the same way.
///
/// No variant ever carries credentials: store names are URLs with the password
/// removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The row addressed by an update does not exist.
    #[error("table `{table}`: no row with key {key}")]
    NotFound {
        /// The table.
        table: &'static str,
        /// The key, as displayed by [`crate::Key`].
        key: String,
    },

    /// A create used a key that already exists; nothing was written.
    #[error("table `{table}`: a row with key {key} already exists")]
    AlreadyExists {
        /// The table.
        table: &'static str,
        /// The key, as displayed by [`crate::Key`].
        key: String,
    },

    /// An update carried a stale `version`; nothing was written. Read the row
    /// again, reapply the change, and retry.
    #[error(
        "table `{table}`: version conflict on key {key}: the update expected version {expected}, the stored row has {actual}"
    )]
    Conflict {
        /// The table.
        table: &'static str,
        /// The key, as displayed by [`crate::Key`].
        key: String,
        /// The version the caller's model carried.
        expected: u64,
        /// The version the stored row has.
        actual: u64,
    },

    /// A backend could not be reached or did not answer in time (connection
    /// refused, reset, closed, timed out, overloaded, shutting down). The same
    /// request may succeed later.
    #[error("store `{store}` is unavailable: {source}")]
    Unavailable {
        /// The store, by its name (a URL without credentials).
        store: String,
        /// What the driver reported.
        #[source]
        source: BoxError,
    },

    /// A backend refused the request (a constraint, a value it cannot hold).
    /// Retrying it unchanged will fail again.
    #[error("store `{store}` rejected the request: {message}")]
    Rejected {
        /// The store, by its name (a URL without credentials).
        store: String,
        /// The backend's own message.
        message: String,
    },

    /// The caller passed something Octopus cannot accept (an invalid
    /// identifier, a key of the wrong type, an oversized value); nothing was
    /// written.
    #[error("invalid input: {what}")]
    Invalid {
        /// What was wrong, naming the table, column or key.
        what: String,
    },

    /// A stored value could not be turned back into the model's field.
    #[error("table `{table}`, column `{column}`: cannot decode the stored value: {reason}")]
    Decode {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// Why.
        reason: String,
    },

    /// A table exists in the store with columns the model cannot use.
    #[error("table `{table}` does not match the model at column `{column}`: {reason}")]
    SchemaMismatch {
        /// The table.
        table: &'static str,
        /// The column that differs.
        column: String,
        /// How it differs.
        reason: String,
    },

    /// The journal could not be opened, read or written: a damaged entry
    /// (with the segment file and byte offset), a lock held by another
    /// process, an I/O failure (kept as the source), or an entry that does
    /// not fit its model.
    #[error("journal {}{}: {}", path.display(), at(*offset), with_source(reason, source.as_ref()))]
    Journal {
        /// The journal directory or segment file.
        path: PathBuf,
        /// Where in the segment, when it is about one entry.
        offset: Option<u64>,
        /// What is wrong (or what was being done, for an I/O failure).
        reason: String,
        /// The I/O failure, if that is what it was.
        #[source]
        source: Option<std::io::Error>,
    },

    /// A configuration value or store URL is wrong.
    #[error("config `{key}`: {reason}")]
    Config {
        /// The configuration key (or URL) at fault.
        key: String,
        /// Why it was refused.
        reason: String,
    },

    /// The API was used where it cannot work (a plan with a journal built
    /// outside a tokio runtime, say): a mistake in the calling code, not in
    /// its configuration or its data.
    #[error("misuse: {what}")]
    Misuse {
        /// What was done, and what to do instead.
        what: String,
    },
}

/// ` at byte offset N`, or nothing.
fn at(offset: Option<u64>) -> String {
    offset
        .map(|o| format!(" at byte offset {o}"))
        .unwrap_or_default()
}

/// `reason: source`, either alone when the other is missing.
fn with_source(reason: &str, source: Option<&std::io::Error>) -> String {
    match source {
        Some(e) if reason.is_empty() => e.to_string(),
        Some(e) => format!("{reason}: {e}"),
        None => reason.to_owned(),
    }
}

impl Error {
    /// An [`Error::Unavailable`] for `store` caused by `source`.
    pub fn unavailable(store: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            store: store.into(),
            source: source.into(),
        }
    }

    /// This error, marked as one the store met before it sent anything
    /// (no connection to send it on, a deadline too short to start): an
    /// [`Error::Unavailable`] so marked is not in doubt
    /// ([`Error::is_in_doubt`]). Other errors are returned as they are.
    pub fn before_sending(self) -> Self {
        match self {
            Error::Unavailable { store, source } if !source.is::<BeforeSending>() => {
                Error::Unavailable {
                    store,
                    source: Box::new(BeforeSending(source)),
                }
            }
            other => other,
        }
    }

    /// Whether the request may have been carried out though it failed: an
    /// [`Error::Unavailable`] not marked [`Error::before_sending`] (a
    /// connection lost or a deadline passed after the request was sent).
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, Error::Unavailable { source, .. } if !source.is::<BeforeSending>())
    }

    /// An [`Error::Invalid`] describing `what`.
    pub fn invalid(what: impl Into<String>) -> Self {
        Error::Invalid { what: what.into() }
    }

    /// An [`Error::NotFound`] for `key` of `table`.
    pub fn not_found(table: &'static str, key: impl Display) -> Self {
        Error::NotFound {
            table,
            key: key.to_string(),
        }
    }

    /// An [`Error::AlreadyExists`] for `key` of `table`.
    pub fn already_exists(table: &'static str, key: impl Display) -> Self {
        Error::AlreadyExists {
            table,
            key: key.to_string(),
        }
    }

    /// An [`Error::Conflict`]: the caller expected version `expected` of
    /// `key`, the stored row has `actual`.
    pub fn conflict(table: &'static str, key: impl Display, expected: u64, actual: u64) -> Self {
        Error::Conflict {
            table,
            key: key.to_string(),
            expected,
            actual,
        }
    }

    /// An [`Error::Rejected`]: `store` refused the request with `message`.
    pub fn rejected(store: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Rejected {
            store: store.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Decode`] for `column` of `table`.
    pub fn decode(table: &'static str, column: &'static str, reason: impl Into<String>) -> Self {
        Error::Decode {
            table,
            column,
            reason: reason.into(),
        }
    }

    /// An [`Error::SchemaMismatch`] at `column` of `table`.
    pub fn schema_mismatch(
        table: &'static str, column: impl Into<String>, reason: impl Into<String>,
    ) -> Self {
        Error::SchemaMismatch {
            table,
            column: column.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Journal`] about `path` (at `offset`, when it is about
    /// one entry).
    pub fn journal(
        path: impl Into<PathBuf>, offset: Option<u64>, reason: impl Into<String>,
    ) -> Self {
        Error::Journal {
            path: path.into(),
            offset,
            reason: reason.into(),
            source: None,
        }
    }

    /// An [`Error::Journal`] for an I/O failure on `path`, kept as its
    /// source.
    pub fn journal_io(
        path: impl Into<PathBuf>, offset: Option<u64>, source: std::io::Error,
    ) -> Self {
        Error::Journal {
            path: path.into(),
            offset,
            reason: String::new(),
            source: Some(source),
        }
    }

    /// An [`Error::Config`] for `key`.
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Misuse`] describing `what`.
    pub fn misuse(what: impl Into<String>) -> Self {
        Error::Misuse { what: what.into() }
    }

    /// Whether this error means a backend is unreachable (the class that trips
    /// a circuit breaker and sends writes to the fallback).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

/// The source of an [`Error::Unavailable`] met before anything was sent
/// ([`Error::before_sending`]); shows as the error it wraps.
#[derive(Debug)]
struct BeforeSending(BoxError);

impl Display for BeforeSending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Display::fmt(&self.0, f)
    }
}

impl std::error::Error for BeforeSending {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
