//! PostgreSQL errors sorted into the classes a caller acts on, by SQLSTATE.

use octopus::Error;
use tokio_postgres::error::SqlState;

/// SQLSTATEs after which the server has rolled the statement (or a
/// deadlock victim's whole transaction) back for a reason that may not hold
/// a moment later: running the call again is safe. When the attempts run
/// out they are [`Error::Unavailable`].
const ROLLED_BACK: &[&str] = &[
    "40001", // serialization failure
    "40P01", // deadlock detected
    "55P03", // lock not available (lock_timeout)
    "57014", // query canceled (statement_timeout)
];

/// Whether the server cannot serve now: a connection exception (class 08),
/// an administrator or crash shutdown or a server still starting (57P01 to
/// 57P03), too many connections or no resources (disk full, out of memory:
/// class 53), a read-only transaction (25006: a standby, or a primary being
/// failed over).
fn is_unavailable(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
        || ROLLED_BACK.contains(&code)
}

/// Whether the server rolled `e`'s statement back for a passing reason
/// (see [`ROLLED_BACK`]), so the call can be run again.
pub(crate) fn is_rolled_back(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| ROLLED_BACK.contains(&c.code()))
}

/// Whether `e` is a duplicate of a table's primary key (23505 on the
/// constraint `primary_key`). A duplicate on another unique index (one a
/// DBA added) is not "the key exists": it stays a rejection.
pub(crate) fn is_duplicate_key(e: &tokio_postgres::Error, primary_key: &str) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(primary_key)
    })
}

/// Whether an error without a server's SQLSTATE means the server could not
/// be reached or answer: a closed connection, or an I/O error anywhere in
/// its chain of causes.
fn is_transport(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Sorts a driver error into the class a caller acts on.
pub(crate) fn classify(store: &str, e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return if is_unavailable(code) {
            Error::unavailable(store, format!("server error {code}: {}", db.message()))
        } else {
            Error::rejected(store.to_owned(), format!("error {code}: {}", db.message()))
        };
    }
    if is_transport(&e) {
        return Error::unavailable(store, e);
    }
    // A parameter the server's column cannot take (an integer too wide for
    // an existing smallint), a result the store cannot read.
    Error::rejected(store.to_owned(), e.to_string())
}

/// Sorts a pool error: a failed connection attempt is the driver's error
/// (a refused login stays a rejection naming the server's reason);
/// anything else about getting a connection means the server cannot be
/// used now.
pub(crate) fn classify_pool(store: &str, e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => classify(store, e),
        other => Error::unavailable(store, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::is_unavailable;

    #[test]
    fn sqlstates_of_outages_are_unavailable_and_others_are_not() {
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "53300", "53100", "25006", "40001",
            "40P01", "55P03", "57014",
        ] {
            assert!(is_unavailable(code), "{code}");
        }
        for code in ["23505", "23503", "42P01", "22003", "42703"] {
            assert!(!is_unavailable(code), "{code}");
        }
    }
}
