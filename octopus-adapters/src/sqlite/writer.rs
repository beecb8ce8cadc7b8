//! The writer thread: the one connection that writes, fed by a channel, which
//! commits whatever writes are queued together in one transaction (group
//! commit) and answers each caller after the commit.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use octopus::{Error, Result};

use super::sql::classify;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 256;

/// A unit of work for the writer thread.
pub(crate) trait Job: Send {
    /// Runs inside the batch's transaction; returns whether it succeeded
    /// (a failed job's changes are rolled back, the others' kept).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch is committed, or failed.
    fn finish(self: Box<Self>, batch: Option<&BatchFailure>);
}

/// Why a whole batch failed (BEGIN or COMMIT), reported to every job in it.
pub(crate) struct BatchFailure {
    unavailable: bool,
    message: String,
}

impl BatchFailure {
    fn error(&self, store: &str) -> Error {
        if self.unavailable {
            Error::unavailable(store, self.message.clone())
        } else {
            Error::rejected(store.to_owned(), self.message.clone())
        }
    }
}

struct Task<F, R> {
    work: Option<F>,
    result: Option<Result<R>>,
    reply: oneshot::Sender<Result<R>>,
    store: std::sync::Arc<str>,
}

impl<F, R> Job for Task<F, R>
where
    F: FnOnce(&Connection) -> Result<R> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, batch: Option<&BatchFailure>) {
        let out = match (batch, self.result) {
            // The job's own error explains more than the rollback that
            // followed it.
            (_, Some(Err(e))) => Err(e),
            (Some(failure), _) => Err(failure.error(&self.store)),
            (None, Some(ok)) => ok,
            (None, None) => Err(Error::unavailable(&*self.store, "the write was not run")),
        };
        // The caller may have gone away; the outcome is committed either way.
        let _ = self.reply.send(out);
    }
}

/// The sending side, held by the store.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::UnboundedSender<Box<dyn Job>>,
    store: std::sync::Arc<str>,
}

impl Writer {
    /// Starts the thread with `conn`.
    pub fn spawn(conn: Connection, store: std::sync::Arc<str>) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::unbounded_channel();
        let name = store.clone();
        std::thread::Builder::new()
            .name("octopus-sqlite-writer".into())
            .spawn(move || run(conn, rx, &name))?;
        Ok(Writer { tx, store })
    }

    /// Runs `work` on the writer thread inside a transaction and returns its
    /// result once committed.
    pub async fn call<R, F>(&self, work: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let task = Task {
            work: Some(work),
            result: None,
            reply,
            store: self.store.clone(),
        };
        self.tx.send(Box::new(task)).map_err(|_| {
            Error::unavailable(&*self.store, "the SQLite writer thread has stopped")
        })?;
        rx.await
            .map_err(|_| Error::unavailable(&*self.store, "the SQLite writer thread has stopped"))?
    }
}

fn run(conn: Connection, mut rx: mpsc::UnboundedReceiver<Box<dyn Job>>, store: &str) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, &mut batch, store);
    }
}

fn failure(store: &str, e: rusqlite::Error) -> BatchFailure {
    let error = classify(store, e);
    BatchFailure {
        unavailable: error.is_unavailable(),
        message: match &error {
            Error::Unavailable { source, .. } => source.to_string(),
            other => other.to_string(),
        },
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_batch(conn: &Connection, batch: &mut Vec<Box<dyn Job>>, store: &str) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let f = failure(store, e);
        for job in batch.drain(..) {
            job.finish(Some(&f));
        }
        return;
    }
    let single = batch.len() == 1;
    let mut any_ok = false;
    let mut broken: Option<BatchFailure> = None;
    for job in batch.iter_mut() {
        if single {
            any_ok = job.run(conn);
            continue;
        }
        // A savepoint per job: one job's failure (a duplicate key, say)
        // undoes only its own changes.
        if let Err(e) = exec(conn, "SAVEPOINT octopus_job") {
            broken = Some(failure(store, e));
            break;
        }
        let ok = job.run(conn);
        any_ok |= ok;
        let end = if ok {
            exec(conn, "RELEASE octopus_job")
        } else {
            exec(conn, "ROLLBACK TO octopus_job").and_then(|()| exec(conn, "RELEASE octopus_job"))
        };
        if let Err(e) = end {
            broken = Some(failure(store, e));
            break;
        }
    }
    let outcome = match broken {
        Some(f) => Err(f),
        None if !any_ok => exec(conn, "ROLLBACK").map_err(|e| failure(store, e)),
        None => exec(conn, "COMMIT").map_err(|e| failure(store, e)),
    };
    if let Err(f) = &outcome
        && !conn.is_autocommit()
    {
        let _ = conn.execute_batch("ROLLBACK");
        for job in batch.drain(..) {
            job.finish(Some(f));
        }
        return;
    }
    let f = outcome.err();
    for job in batch.drain(..) {
        job.finish(f.as_ref());
    }
}
