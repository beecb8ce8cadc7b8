//! The SQLite store ([`SqliteStore`]), on rusqlite with SQLite bundled.
//!
//! # Shape, and why
//!
//! Measured on this project's machines, a rusqlite read by key takes about
//! 1.4 µs, while any hop to another thread costs 3 to 7 µs. So:
//!
//! - **Reads run inline** on the calling task, on a pooled read-only
//!   connection. In WAL mode readers never wait for the writer, so an inline
//!   read cannot stall the executor on a lock; if SQLite still reports the
//!   database busy or locked (another process holding an exclusive lock), the
//!   read is retried on the writer thread, which may wait.
//! - **Writes go to one dedicated writer thread** through a channel. It
//!   commits every write queued at that moment in one transaction (group
//!   commit: one fsync for many writers), each write in its own savepoint so
//!   one failure undoes only itself, and answers each caller after the
//!   commit. No fsync or lock wait ever runs on an executor thread.
//! - In-memory databases (`SqliteStore::memory()`) have one connection, so
//!   reads go through the writer thread too.
//!
//! # Storage
//!
//! One `STRICT` table per model, one real column per field: `INTEGER` for
//! booleans and integers, `REAL` for floats, `TEXT` for strings, UUIDs and
//! `json` fields, `BLOB` for bytes; the key is the primary key; only `Option`
//! fields are nullable. A `u64` is stored as the two's-complement bit pattern
//! of an `INTEGER`, so the whole range survives (values above `i64::MAX`
//! show as negative numbers in the `sqlite3` shell, and `scan` pages `u64`
//! keys in SQLite's signed order, so keys above `i64::MAX` come first).
//! SQLite turns NaN into NULL, so a NaN is refused with an error naming the
//! column; infinities are stored as they are. `-0.0` comes back as `0.0`
//! (SQLite stores a whole-number REAL as an integer); every other float
//! round-trips bit for bit.

mod ops;
mod options;
mod sql;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use octopus::{
    BoxFuture, Change, Error, Key, Record, Result, Schema, Store, check_key, check_record, key_of,
};
use rusqlite::{Connection, params_from_iter};

use crate::lock::MutexExt;
use crate::per_schema::PerSchema;
use ops::{JobError, get_many, get_one, update};
pub use options::{SqliteOptions, Synchronous};
use options::{open_reader, open_writer};
use sql::{KeyParam, Param, Statements};
use writer::Writer;

/// A [`Store`] on an SQLite database file (or memory). See the module docs
/// for how reads and writes are run.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use octopus_adapters::sqlite::SqliteStore;
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("app.db")).await?;
/// # Ok::<(), octopus::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    path: Option<PathBuf>,
    options: SqliteOptions,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    statements: PerSchema<Statements>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::debug_store(f, "SqliteStore", &self.inner.name)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` in WAL mode
    /// with default options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens the database file at `path` with `options`.
    pub async fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let name: Arc<str> = format!("sqlite://{}", path.display()).into();
        let store_name = name.clone();
        let opts = options.clone();
        let open_path = path.clone();
        // Opening may create the file and switch to WAL (a write): keep it off
        // the executor.
        let conn =
            tokio::task::spawn_blocking(move || open_writer(Some(&open_path), &opts, &store_name))
                .await
                .map_err(|e| Error::unavailable(&*name, e))??;
        Self::start(conn, name, Some(path), options)
    }

    /// A private in-memory database (gone when the store is dropped).
    pub fn memory() -> Result<Self> {
        let name: Arc<str> = "sqlite::memory:".into();
        let options = SqliteOptions::default();
        let conn = open_writer(None, &options, &name)?;
        Self::start(conn, name, None, options)
    }

    fn start(
        conn: Connection, name: Arc<str>, path: Option<PathBuf>, options: SqliteOptions,
    ) -> Result<Self> {
        let writer =
            Writer::spawn(conn, name.clone()).map_err(|e| Error::unavailable(&*name, e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                name,
                path,
                options,
                writer,
                readers: Mutex::new(Vec::new()),
                statements: PerSchema::default(),
            }),
        })
    }

    fn statements(&self, schema: &'static Schema) -> Arc<Statements> {
        self.inner.statements.get(schema, Statements::new)
    }

    /// Runs a read inline on a pooled read connection; `None` when the read
    /// must go to the writer thread instead (memory database, or busy).
    fn read_inline<R>(
        &self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
    ) -> Option<Result<R>> {
        let path = self.inner.path.as_ref()?;
        let pooled = self.inner.readers.locked().pop();
        let conn = match pooled {
            Some(c) => c,
            None => match open_reader(path) {
                Ok(c) => c,
                Err(e) => return Some(Err(sql::classify(&self.inner.name, e))),
            },
        };
        let out = f(&conn);
        let mut pool = self.inner.readers.locked();
        if pool.len() < self.inner.options.readers {
            pool.push(conn);
        }
        drop(pool);
        match out {
            Ok(r) => Some(Ok(r)),
            Err(e) if sql::is_busy(&e) => None,
            Err(e) => Some(Err(sql::classify(&self.inner.name, e))),
        }
    }

    /// Runs `job` on the writer thread (so inside its group commit's
    /// transaction) with the table's prepared statements.
    async fn write<R, F>(&self, schema: &'static Schema, job: F) -> Result<R>
    where
        F: FnOnce(&Connection, &Statements) -> std::result::Result<R, JobError> + Send + 'static,
        R: Send + 'static,
    {
        let st = self.statements(schema);
        let name = self.inner.name.clone();
        self.inner
            .writer
            .call(move |conn| job(conn, &st).map_err(|e| e.into_error(|e| sql::classify(&name, e))))
            .await
    }

    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: Fn(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        if let Some(out) = self.read_inline(&f) {
            return out;
        }
        let name = self.inner.name.clone();
        self.inner
            .writer
            .call(move |conn| f(conn).map_err(|e| sql::classify(&name, e)))
            .await
    }
}

impl Store for SqliteStore {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn ensure_schema<'a>(&'a self, schema: &'static Schema) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let create = sql::create_table(schema);
            self.inner
                .writer
                .call(move |conn| {
                    conn.execute_batch(&create)
                        .map_err(|e| sql::classify("sqlite", e))?;
                    sql::check_table(conn, schema)
                })
                .await
        })
    }

    fn get<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async move {
            check_key(schema, key)?;
            let st = self.statements(schema);
            if let Some(out) = self.read_inline(|conn| get_one(conn, schema, &st, key)) {
                return out;
            }
            // Busy, or an in-memory database: the writer thread answers.
            let key = key.clone();
            self.write(schema, move |conn, st| Ok(get_one(conn, schema, st, &key)?))
                .await
        })
    }

    fn get_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        Box::pin(async move {
            keys.iter().try_for_each(|k| check_key(schema, k))?;
            let st = self.statements(schema);
            let keys = keys.to_vec();
            self.read(move |conn| get_many(conn, schema, &st, &keys))
                .await
        })
    }

    fn insert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.validate(schema, record)?;
            let record = record.clone();
            self.write(schema, move |conn, st| {
                let mut stmt = conn.prepare_cached(&st.insert)?;
                match stmt.execute(params_from_iter(record.values().iter().map(Param))) {
                    Ok(_) => Ok(()),
                    Err(e) if sql::is_duplicate(&e, schema) => Err(JobError::Octopus(
                        Error::already_exists(schema.table(), key_of(schema, &record)?.to_string()),
                    )),
                    Err(e) => Err(e.into()),
                }
            })
            .await
        })
    }

    fn upsert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        self.upsert_many(schema, std::slice::from_ref(record))
    }

    fn upsert_many<'a>(
        &'a self, schema: &'static Schema, records: &'a [Record],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            records
                .iter()
                .try_for_each(|record| self.validate(schema, record))?;
            let records = records.to_vec();
            // One job, so one transaction and one sync for the whole batch.
            self.write(schema, move |conn, st| {
                let mut stmt = conn.prepare_cached(&st.upsert)?;
                for record in &records {
                    stmt.execute(params_from_iter(record.values().iter().map(Param)))?;
                }
                Ok(())
            })
            .await
        })
    }

    fn delete_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            keys.iter().try_for_each(|key| check_key(schema, key))?;
            let keys = keys.to_vec();
            self.write(schema, move |conn, st| {
                let mut stmt = conn.prepare_cached(&st.delete)?;
                for key in &keys {
                    stmt.execute([KeyParam(key)])?;
                }
                Ok(())
            })
            .await
        })
    }

    fn update<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.validate(schema, record)?;
            let record = record.clone();
            self.write(schema, move |conn, st| {
                update(conn, schema, st, &record, expected_version)
            })
            .await
        })
    }

    fn delete<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            check_key(schema, key)?;
            let key = key.clone();
            self.write(schema, move |conn, st| {
                let deleted = conn.prepare_cached(&st.delete)?.execute([KeyParam(&key)])?;
                Ok(deleted > 0)
            })
            .await
        })
    }

    fn validate(&self, schema: &'static Schema, record: &Record) -> Result<()> {
        check_record(schema, record)?;
        sql::check_storable(schema, record)
    }

    fn apply<'a>(
        &'a self, schema: &'static Schema, changes: &'a [Change],
    ) -> BoxFuture<'a, Result<Vec<Result<()>>>> {
        Box::pin(async move {
            // What can be refused without the database is refused here; the
            // rest is read, checked and written in one job on the writer
            // thread, so in one transaction.
            let checked: Vec<Result<()>> = changes
                .iter()
                .map(|c| ops::check_change(self, schema, c))
                .collect();
            let st = self.statements(schema);
            let changes = changes.to_vec();
            let name = self.inner.name.clone();
            self.inner
                .writer
                .call(move |conn| ops::apply(conn, schema, &st, &name, &changes, checked))
                .await
        })
    }

    fn scan<'a>(
        &'a self, schema: &'static Schema, after: Option<&'a Key>, limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        Box::pin(async move {
            if let Some(k) = after {
                check_key(schema, k)?;
            }
            let st = self.statements(schema);
            let after = after.cloned();
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            self.read(move |conn| {
                let rows = match &after {
                    None => conn
                        .prepare_cached(&st.scan_first)?
                        .query_map([limit], |row| sql::read_row(schema, row))?
                        .collect::<rusqlite::Result<Vec<_>>>()?,
                    Some(k) => conn
                        .prepare_cached(&st.scan_after)?
                        .query_map(rusqlite::params![KeyParam(k), limit], |row| {
                            sql::read_row(schema, row)
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?,
                };
                Ok(rows)
            })
            .await
        })
    }
}
