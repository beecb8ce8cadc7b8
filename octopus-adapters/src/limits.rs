//! The time limits of a SQL store's calls, derived from its deadline: how
//! long the server may run one statement (below the deadline, so a write the
//! client gave up on is ended by the server, not committed later), and
//! whether a write or a commit may still be sent.

use std::time::{Duration, Instant};

/// The time limits derived from a store's deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    deadline: Duration,
    statement: Duration,
}

impl Limits {
    /// Limits for calls bounded by `deadline`.
    pub(crate) fn new(deadline: Duration) -> Self {
        Limits {
            deadline,
            statement: deadline * 3 / 4,
        }
    }

    /// The deadline of every call.
    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }

    /// How long the server may run one statement (MariaDB's
    /// `max_statement_time`, PostgreSQL's `statement_timeout`).
    pub(crate) fn statement(&self) -> Duration {
        self.statement
    }

    /// `innodb_lock_wait_timeout`, in whole seconds: at least one (the
    /// variable's minimum), otherwise no longer than a statement may run.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) fn lock_wait_secs(&self) -> u64 {
        self.statement.as_secs().max(1)
    }

    /// Room left for the network and a commit after the server's statement
    /// limit, before the deadline.
    fn margin(&self) -> Duration {
        self.deadline / 20
    }

    /// Whether a write that commits as it ends can still be sent for a call
    /// that ends at `until`: the server would end it (by its own limit)
    /// before the client stops waiting.
    pub(crate) fn room_for_statement(&self, until: Instant) -> bool {
        until.saturating_duration_since(Instant::now()) >= self.statement + self.margin()
    }

    /// Whether a transaction's `COMMIT` can still be sent for a call that
    /// ends at `until`.
    pub(crate) fn room_for_commit(&self, until: Instant) -> bool {
        until.saturating_duration_since(Instant::now()) >= self.margin()
    }
}
