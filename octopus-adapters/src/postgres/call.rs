//! How one store call runs: a pooled connection and the statements, all
//! within the call's deadline, and bounded retries of what the server
//! rolled back (a serialization failure, a deadlock, a lock or statement
//! timeout).
//!
//! # A write the client gave up on never commits later
//!
//! The deadline is a `tokio::time::timeout` around the whole call, the
//! checkout included. When it fires, the call's future is dropped, and with
//! it the connection it held: a connection given up on in the middle of a
//! statement is taken out of the pool and closed (a later call would
//! otherwise queue behind the abandoned statement's answer). The server
//! bounds every statement and lock wait below the deadline
//! (`statement_timeout`, `lock_timeout`: three quarters of it), notices a
//! closed client while a statement runs (`client_connection_check_interval`)
//! and rolls back a transaction left open (`idle_in_transaction_session_timeout`).
//! A write that commits as it ends is sent only while the server would end
//! it before the deadline; a transaction's `COMMIT` only while a margin is
//! left. What remains is the commit itself arriving just before the client
//! stops waiting: the in-doubt outcome any client-side deadline has.

use std::future::Future;
use std::time::Instant;

use deadpool_postgres::{ClientWrapper, Object};
use octopus::{Error, Result};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{PostgresStore, error};

/// Attempts of a call whose statement the server rolled back, the first
/// included.
pub(crate) const ATTEMPTS: u32 = 3;

/// Why a call's work stopped: tokio-postgres' error or a refusal of ours.
pub(crate) type Failure = crate::failure::Failure<tokio_postgres::Error>;

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Driver(e)
    }
}

/// Whether and how a call commits, which decides when its statements may
/// still be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: anything may be sent while the deadline allows.
    Read,
    /// A write or DDL that commits as it ends.
    Write,
    /// A transaction: its work checks the room for `COMMIT` itself.
    Transaction,
}

/// A checked-out connection, through which a call's statements run. If it
/// is dropped in the middle of a statement (the call's deadline fired) or
/// of a transaction, it is taken out of the pool and closed; otherwise it
/// goes back to the pool.
pub(crate) struct Conn {
    object: Option<Object>,
    /// A statement was sent and its answer not read yet.
    busy: bool,
    /// `BEGIN` was sent and no `COMMIT` or `ROLLBACK` answered yet.
    in_transaction: bool,
}

/// A statement's parameters.
pub(crate) type Params<'p> = [&'p (dyn ToSql + Sync)];

impl Conn {
    fn client(&self) -> &ClientWrapper {
        self.object
            .as_ref()
            .expect("a connection is held until the call drops it")
    }

    /// The rows `text` (a prepared statement, cached per connection) returns.
    pub(crate) async fn query(
        &mut self, text: &str, params: &Params<'_>,
    ) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
        self.busy = true;
        let client = self.client();
        let outcome = async {
            let statement = client.prepare_cached(text).await?;
            client.query(&statement, params).await
        }
        .await;
        // Answered, whatever the answer: the connection can serve again.
        self.busy = false;
        outcome
    }

    /// Runs `text` (a prepared statement); returns the rows it changed.
    pub(crate) async fn execute(
        &mut self, text: &str, params: &Params<'_>,
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        self.busy = true;
        let client = self.client();
        let outcome = async {
            let statement = client.prepare_cached(text).await?;
            client.execute(&statement, params).await
        }
        .await;
        self.busy = false;
        outcome
    }

    /// Runs `text` unprepared (DDL, transaction control).
    pub(crate) async fn batch(
        &mut self, text: &str,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        self.busy = true;
        let outcome = self.client().batch_execute(text).await;
        self.busy = false;
        outcome
    }

    /// `BEGIN` at `READ COMMITTED` (every row a transaction decides on is
    /// read with `FOR UPDATE`).
    pub(crate) async fn begin(&mut self) -> std::result::Result<(), tokio_postgres::Error> {
        self.in_transaction = true;
        self.batch("BEGIN ISOLATION LEVEL READ COMMITTED").await
    }

    /// `COMMIT`.
    pub(crate) async fn commit(&mut self) -> std::result::Result<(), tokio_postgres::Error> {
        self.batch("COMMIT").await?;
        self.in_transaction = false;
        Ok(())
    }

    /// `ROLLBACK`; a connection whose rollback fails is closed when dropped.
    pub(crate) async fn rollback(&mut self) {
        if self.batch("ROLLBACK").await.is_ok() {
            self.in_transaction = false;
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(object) = self.object.take()
            && (self.busy || self.in_transaction)
        {
            drop(Object::take(object));
        }
    }
}

impl PostgresStore {
    /// Runs `f` on a pooled connection within the deadline.
    pub(super) async fn call<T, F, Fut, E>(&self, access: Access, f: F) -> Result<T>
    where
        F: FnMut(Conn, Instant) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Failure>,
    {
        let name = &self.inner.name;
        self.call_with(access, f, error::is_rolled_back, |e| {
            error::classify(name, e)
        })
        .await
    }

    /// Runs `f` on a pooled connection, the checkout included, within the
    /// deadline; `f` also gets the instant the call ends. Work that failed
    /// with an error `retry` accepts (one the server rolled back) is run
    /// again (up to [`ATTEMPTS`] in all) while a whole statement still fits
    /// in the deadline; driver errors left over go through `on_error`.
    pub(super) async fn call_with<T, F, Fut, E>(
        &self, access: Access, mut f: F, retry: impl Fn(&tokio_postgres::Error) -> bool,
        on_error: impl FnOnce(tokio_postgres::Error) -> Error,
    ) -> Result<T>
    where
        F: FnMut(Conn, Instant) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Failure>,
    {
        let limits = self.inner.limits;
        let until = Instant::now() + limits.deadline();
        let name = &self.inner.name;
        let work = async {
            let mut attempt = 1;
            loop {
                let object = self.inner.pool.get().await.map_err(|e| {
                    Failure::Octopus(error::classify_pool(name, e).before_sending())
                })?;
                if access == Access::Write && !limits.room_for_statement(until) {
                    let late = self.no_time(until, "send a write");
                    return Err(Failure::Octopus(late.before_sending()));
                }
                let conn = Conn {
                    object: Some(object),
                    busy: false,
                    in_transaction: false,
                };
                match f(conn, until).await.map_err(Into::into) {
                    Err(Failure::Driver(e))
                        if retry(&e) && attempt < ATTEMPTS && limits.room_for_statement(until) =>
                    {
                        tracing::debug!(target: "octopus::postgres", store = %name,
                            attempt, error = %e, "statement rolled back by the server; retrying");
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(limits.deadline(), work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(failure)) => Err(failure.into_error(on_error)),
            Err(_) => Err(Error::unavailable(
                name,
                format!(
                    "no answer within the {} ms deadline",
                    limits.deadline().as_millis()
                ),
            )),
        }
    }

    /// The error of a call that found too little of its deadline left to
    /// `what` safely.
    pub(super) fn no_time(&self, until: Instant, what: &str) -> Error {
        let limits = self.inner.limits;
        Error::unavailable(
            &self.inner.name,
            format!(
                "only {} ms of the {} ms deadline left: not enough to {what}",
                until.saturating_duration_since(Instant::now()).as_millis(),
                limits.deadline().as_millis(),
            ),
        )
    }
}
