//! How one store call runs: a pooled connection and the statements, all
//! within the call's deadline; the server's own limits on each statement,
//! set below that deadline; and bounded retries of what the server rolled
//! back (a deadlock, a lock wait or statement that timed out).
//!
//! # A write the client gave up on never commits later
//!
//! mysql_async has no read timeout, so the deadline is a
//! `tokio::time::timeout` around the whole call. When it fires, the call's
//! future is dropped; a connection dropped in the middle of a statement is
//! marked broken by mysql_async (its routines flag the connection
//! disconnected until they complete), so the pool closes it instead of
//! handing it out again with a late answer pending. Closing the socket does
//! not stop the statement on the server, though: MariaDB notices a gone
//! client only when it next reads or writes it. So every connection is set up
//! with `max_statement_time` (MariaDB) at three quarters of the deadline and
//! `innodb_lock_wait_timeout` in whole seconds (no more than that, but at
//! least one, the variable's minimum), and a write that commits as it ends
//! (autocommit) is sent only while the server would end it before the call's
//! deadline passes. MySQL has no `max_statement_time` for writes: there a
//! lock wait is bounded by `innodb_lock_wait_timeout` only, so a deadline of
//! under 4/3 s (a statement limit under one second) leaves the window open.
//! In a transaction only `COMMIT` commits, and it waits for no lock: it is
//! sent only while a small margin of the deadline is left. A call that found no time for its
//! commit fails with [`Error::Unavailable`] without sending it; a client that
//! gives up in the middle of a transaction leaves it to be rolled back.
//!
//! What remains is the moment of a commit itself: a `COMMIT` (or an
//! autocommitted write) that reached the server just before the deadline, or
//! was held up on the network, may complete after the client stopped
//! waiting. That in-doubt outcome comes with any client-side deadline; the
//! limits keep it to the commit itself instead of a whole lock wait.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mysql_async::Conn;
use octopus::{Error, Result};

use super::{MysqlStore, sql};
pub(crate) use crate::limits::Limits;

/// Attempts of a call whose statement the server rolled back (deadlock, lock
/// wait or statement timeout), the first included.
pub(crate) const ATTEMPTS: u32 = 3;

/// Why a call's work stopped: mysql_async's error or a refusal of ours.
pub(crate) type Failure = crate::failure::Failure<mysql_async::Error>;

impl From<mysql_async::Error> for Failure {
    fn from(e: mysql_async::Error) -> Self {
        Failure::Driver(e)
    }
}

/// Whether and how a call commits, which decides when its statements may
/// still be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: anything may be sent while the deadline allows.
    Read,
    /// A write or DDL that commits as it ends: sent only while the server
    /// would end it before the deadline ([`Limits::room_for_statement`]).
    Write,
    /// A transaction: its work checks [`Limits::room_for_commit`] before
    /// `COMMIT`, its only commit point.
    Transaction,
}

/// The statement that sets a new connection's session limits. The
/// `/*M! … */` part runs on MariaDB only (MySQL has no `max_statement_time`
/// for writes; it reads the comment as a comment).
pub(crate) fn session_setup(limits: &Limits) -> String {
    format!(
        "SET SESSION innodb_lock_wait_timeout = {} /*M!100108 , max_statement_time = {:.6} */",
        limits.lock_wait_secs(),
        limits.statement().as_secs_f64()
    )
}

impl MysqlStore {
    /// Runs `f` on a pooled connection within the deadline: a read or a
    /// write, whose deadline and breaker `access` picks.
    pub(super) async fn call<T, F, Fut, E>(&self, access: Access, mut f: F) -> Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Failure>,
    {
        let name = &self.inner.name;
        self.call_with(access, |conn, _| f(conn), |e| sql::classify(name, e))
            .await
    }

    /// Runs `f` on a pooled connection, the checkout included, within the
    /// deadline; `f` also gets the instant the call ends. A statement the
    /// server rolled back is run again (up to [`ATTEMPTS`] in all) while a
    /// whole statement still fits in the deadline; driver errors left over
    /// go through `on_error`.
    pub(super) async fn call_with<T, F, Fut, E>(
        &self, access: Access, mut f: F, on_error: impl FnOnce(mysql_async::Error) -> Error,
    ) -> Result<T>
    where
        F: FnMut(Conn, Instant) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Failure>,
    {
        let limits = self.inner.limits;
        let until = Instant::now() + limits.deadline();
        let checkout_failed = AtomicBool::new(false);
        let work = async {
            let mut attempt = 1;
            loop {
                let conn = match self.inner.pool.get_conn().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        checkout_failed.store(true, Ordering::Relaxed);
                        return Err(e.into());
                    }
                };
                if access == Access::Write && !limits.room_for_statement(until) {
                    return Err(Failure::Octopus(
                        self.no_time_to_write(until).before_sending(),
                    ));
                }
                match f(conn, until).await.map_err(Into::into) {
                    Err(Failure::Driver(e))
                        if sql::is_rolled_back(&e)
                            && attempt < ATTEMPTS
                            // Another full statement fits: a retry cut
                            // short by the deadline would only cost a
                            // connection.
                            && limits.room_for_statement(until) =>
                    {
                        tracing::debug!(target: "octopus::mysql", store = %self.inner.name,
                            attempt, error = %e, "statement rolled back by the server; retrying");
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(limits.deadline(), work).await {
            Ok(Ok(v)) => Ok(v),
            // No connection, so nothing sent: not in doubt.
            Ok(Err(failure)) if checkout_failed.load(Ordering::Relaxed) => {
                Err(failure.into_error(on_error).before_sending())
            }
            Ok(Err(failure)) => Err(failure.into_error(on_error)),
            Err(_) => Err(Error::unavailable(
                &self.inner.name,
                format!(
                    "no answer within the {} ms deadline",
                    limits.deadline().as_millis()
                ),
            )),
        }
    }

    fn no_time_to_write(&self, until: Instant) -> Error {
        let limits = self.inner.limits;
        Error::unavailable(
            &self.inner.name,
            format!(
                "only {} ms of the {} ms deadline left: not enough to send a write the server may run for {} ms",
                until.saturating_duration_since(Instant::now()).as_millis(),
                limits.deadline().as_millis(),
                limits.statement().as_millis()
            ),
        )
    }

    /// The error of a transaction that found no time left to commit.
    pub(super) fn no_time_to_commit(&self, until: Instant) -> Failure {
        Failure::Octopus(Error::unavailable(
            &self.inner.name,
            format!(
                "only {} ms of the {} ms deadline left: not enough to commit; rolled back",
                until.saturating_duration_since(Instant::now()).as_millis(),
                self.inner.limits.deadline().as_millis(),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn limits_stay_below_the_deadline() {
        let l = Limits::new(Duration::from_millis(800));
        assert_eq!(l.statement(), Duration::from_millis(600));
        assert_eq!(l.lock_wait_secs(), 1, "the variable's minimum");
        assert_eq!(
            session_setup(&l),
            "SET SESSION innodb_lock_wait_timeout = 1 /*M!100108 , max_statement_time = 0.600000 */"
        );
        let l = Limits::new(Duration::from_secs(10));
        assert_eq!(l.lock_wait_secs(), 7);
        assert!(l.room_for_statement(Instant::now() + Duration::from_secs(10)));
        assert!(!l.room_for_statement(Instant::now() + Duration::from_secs(7)));
        assert!(l.room_for_commit(Instant::now() + Duration::from_secs(1)));
        assert!(!l.room_for_commit(Instant::now() + Duration::from_millis(400)));
    }
}
