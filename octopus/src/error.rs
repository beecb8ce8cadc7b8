//! The one error type of Octopus.

use std::error::Error as StdError;

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
    /// process, an I/O failure, or an entry that does not fit its model.
    #[error("journal {path}{}: {reason}", offset.map(|o| format!(" at byte offset {o}")).unwrap_or_default())]
    Journal {
        /// The journal directory or segment file.
        path: String,
        /// Where in the segment, when it is about one entry.
        offset: Option<u64>,
        /// What is wrong.
        reason: String,
    },

    /// A configuration value or store URL is wrong.
    #[error("config `{key}`: {reason}")]
    Config {
        /// The configuration key (or URL) at fault.
        key: String,
        /// Why it was refused.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Unavailable`] for `store` caused by `source`.
    pub fn unavailable(store: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            store: store.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Invalid`] describing `what`.
    pub fn invalid(what: impl Into<String>) -> Self {
        Error::Invalid { what: what.into() }
    }

    /// Whether this error means a backend is unreachable (the class that trips
    /// a circuit breaker and sends writes to the fallback).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}
