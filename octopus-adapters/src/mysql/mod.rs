//! The MySQL / MariaDB store ([`MysqlStore`]), on mysql_async.
//!
//! # Connections
//!
//! The pool is configured deliberately, from measurements on this project's
//! machines: a fixed size (`pool_size`, default 16; min = max, so no
//! connection churn under load), no `reset_connection` on checkout (it costs a
//! round trip per call and drops the statement cache), prepared statements
//! cached per connection, `TCP_NODELAY`, and `prefer_socket` off, so a URL
//! naming `127.0.0.1` really uses TCP (and a fault proxy in front of the
//! server is not bypassed through the unix socket).
//!
//! Every call, connection checkout included, is bounded by one deadline
//! (`deadline_ms`, default 2000): mysql_async has no read timeout of its own,
//! so a server that accepts but never answers fails the call with
//! [`Error::Unavailable`] when the deadline passes. The server bounds each
//! statement below that deadline too (`max_statement_time` on MariaDB,
//! `innodb_lock_wait_timeout`), so a write the client gave up on does not
//! commit later; a deadlock, lock wait or statement timeout is retried (three
//! attempts in all) while there is time, then is [`Error::Unavailable`], like
//! a server in read-only mode (a replica, or a primary being failed over).
//!
//! # Conditional changes
//!
//! [`Store::apply`] runs in one `REPEATABLE READ` transaction: the keys are
//! locked with `SELECT key, version … FOR UPDATE` (absent keys too, by their
//! gap, so no one can create them meanwhile), each change is checked against
//! the stored version (against the whole row where only that decides), and
//! the passing ones are written with multi-row statements. Every
//! statement is sized to MySQL's placeholder limit and the server's
//! `max_allowed_packet`.
//!
//! # Runtimes
//!
//! mysql_async binds a pool to the tokio runtime that first uses it (its
//! connections live on that runtime's I/O driver). Create a `MysqlStore`
//! inside the runtime that will use it and keep it there: an application
//! creates one at startup in its main runtime and shares it (it is cheap to
//! clone); each test creates its own store. Creating the store does not
//! connect, so an application can start while MySQL is down.
//!
//! # Tables
//!
//! InnoDB, `utf8mb4` with the binary no-pad collation (keys compare byte for
//! byte: `"a"`, `"A"` and `"a "` are three keys). `BIGINT UNSIGNED` for
//! `u64`, `FLOAT`/`DOUBLE`, `LONGBLOB`, `LONGTEXT` for text and `json`
//! fields, `VARCHAR(768)` for text keys and `CHAR(36)` for UUIDs. MySQL
//! cannot hold NaN or infinities: they are refused with an error naming the
//! column. `-0.0` comes back as `0.0`; every other float round-trips bit for
//! bit (`FLOAT` columns hold `f32` fields exactly).

mod apply;
mod call;
mod chunk;
mod sql;
mod table;
mod url;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Pool};
use octopus::{
    BoxFuture, Change, Error, Key, Record, Result, Schema, Store, check_key, check_record, key_of,
};

use crate::per_schema::PerSchema;
use call::{Access, Limits};
use sql::{Statements, key_param, param};

/// A [`Store`] on a MySQL or MariaDB database. Cheap to clone (one `Arc`).
///
/// ```no_run
/// # async fn demo() -> octopus::Result<()> {
/// use octopus_adapters::mysql::MysqlStore;
/// let store = MysqlStore::new("mysql://app@127.0.0.1:3306/shop?pool_size=32&deadline_ms=500")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MysqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    pool: Pool,
    limits: Limits,
    statements: PerSchema<Statements>,
    /// The server's `max_allowed_packet`, read on first use (0: not yet).
    max_packet: AtomicUsize,
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore")
            .field("name", &self.inner.name)
            .field("deadline", &self.inner.limits.deadline())
            .finish()
    }
}

impl MysqlStore {
    /// A store for `url`: `mysql://user[:password]@host[:port]/database`,
    /// with optional `pool_size` (default 16) and `deadline_ms` (default
    /// 2000) query parameters; other query parameters go to mysql_async.
    /// Does not connect: the first call does.
    pub fn new(url: &str) -> Result<Self> {
        let settings = url::parse(url)?;
        Ok(MysqlStore {
            inner: Arc::new(Inner {
                name: settings.name,
                pool: Pool::new(settings.opts),
                limits: settings.limits,
                statements: PerSchema::default(),
                max_packet: AtomicUsize::new(0),
            }),
        })
    }

    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        self.inner.limits.deadline()
    }

    /// Checks that the server answers within the deadline.
    pub async fn ping(&self) -> Result<()> {
        self.call(Access::Read, |mut conn| async move { conn.ping().await })
            .await
    }

    /// The server's version (`SELECT VERSION()`), within the deadline.
    pub async fn server_version(&self) -> Result<String> {
        let version: Option<String> = self
            .call(Access::Read, |mut conn| async move {
                conn.query_first("SELECT VERSION()").await
            })
            .await?;
        Ok(version.unwrap_or_default())
    }

    /// Closes the pool's connections (waits for checked-out ones).
    pub async fn close(self) -> Result<()> {
        let name = self.inner.name.clone();
        self.inner
            .pool
            .clone()
            .disconnect()
            .await
            .map_err(|e| sql::classify(&name, e))
    }

    fn statements(&self, schema: &'static Schema) -> Arc<Statements> {
        self.inner.statements.get(schema, Statements::new)
    }

    async fn fetch(
        &self, schema: &'static Schema, text: &str, params: &[mysql_async::Value],
    ) -> Result<Vec<Record>> {
        let rows: Vec<mysql_async::Row> = self
            .call(Access::Read, |mut conn| async move {
                conn.exec(text, Params::Positional(params.to_vec())).await
            })
            .await?;
        rows.into_iter()
            .map(|row| sql::read_row(schema, row))
            .collect()
    }
}

/// A record's values as statement parameters.
fn values_of(record: &Record) -> Params {
    Params::Positional(record.values().iter().map(param).collect())
}

fn check_text_key(schema: &'static Schema, key: &Key) -> Result<()> {
    check_key(schema, key)?;
    if let Key::Text(k) = key {
        sql::check_key_length(schema, k)?;
    }
    Ok(())
}

impl Store for MysqlStore {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn ensure_schema<'a>(&'a self, schema: &'static Schema) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let st = self.statements(schema);
            let create = st.create.as_str();
            let found: Vec<(String, String, String, String, String, Option<String>)> = self
                .call(Access::Write, |mut conn| async move {
                    conn.query_drop(create).await?;
                    conn.exec(
                        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY, COLUMN_DEFAULT \
                         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? \
                         ORDER BY ORDINAL_POSITION",
                        (schema.table(),),
                    )
                    .await
                })
                .await?;
            let existing: Vec<table::Existing> = found
                .into_iter()
                .map(
                    |(name, data_type, column_type, nullable, key, default)| table::Existing {
                        name,
                        data_type,
                        declared: column_type,
                        nullable: nullable == "YES",
                        primary: key == "PRI",
                        has_default: default.is_some(),
                    },
                )
                .collect();
            table::check_table(schema, &existing)
        })
    }

    fn get<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async move {
            check_text_key(schema, key)?;
            let st = self.statements(schema);
            let rows = self.fetch(schema, &st.select, &[key_param(key)]).await?;
            Ok(rows.into_iter().next())
        })
    }

    fn get_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            keys.iter().try_for_each(|k| check_text_key(schema, k))?;
            let st = self.statements(schema);
            let marks = vec!["?"; keys.len()].join(", ");
            let text = format!("{} WHERE {} IN ({marks})", st.select_columns, st.key);
            let params: Vec<_> = keys.iter().map(key_param).collect();
            let rows = self.fetch(schema, &text, &params).await?;
            let mut found: HashMap<Key, Record> = HashMap::with_capacity(rows.len());
            for r in rows {
                found.insert(key_of(schema, &r)?, r);
            }
            Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
        })
    }

    fn insert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.validate(schema, record)?;
            let st = self.statements(schema);
            let text = st.insert.as_str();
            let name = &self.inner.name;
            self.call_with(
                Access::Write,
                |mut conn, _| async move { conn.exec_drop(text, values_of(record)).await },
                |e| {
                    if !sql::is_duplicate(&e) {
                        return sql::classify(name, e);
                    }
                    match key_of(schema, record) {
                        Ok(k) => Error::already_exists(schema.table(), k.to_string()),
                        Err(e) => e,
                    }
                },
            )
            .await
        })
    }

    fn upsert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.validate(schema, record)?;
            let st = self.statements(schema);
            let text = st.upsert.as_str();
            self.call(Access::Write, |mut conn| async move {
                conn.exec_drop(text, values_of(record)).await
            })
            .await
        })
    }

    fn upsert_many<'a>(
        &'a self, schema: &'static Schema, records: &'a [Record],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            records.iter().try_for_each(|r| self.validate(schema, r))?;
            let st = self.statements(schema);
            self.exec_runs(
                records,
                |r| chunk::row_len(r.values()),
                |r, out| out.extend(r.values().iter().map(param)),
                |n| st.upsert_rows(n),
                schema.columns().len(),
            )
            .await
        })
    }

    fn delete_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            keys.iter().try_for_each(|k| check_text_key(schema, k))?;
            let st = self.statements(schema);
            self.exec_runs(
                keys,
                chunk::key_len,
                |k, out| out.push(key_param(k)),
                |n| st.delete_keys(n),
                1,
            )
            .await
        })
    }

    fn update<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.validate(schema, record)?;
            let key = key_of(schema, record)?;
            let st = self.statements(schema);
            let versioned = expected_version.filter(|_| schema.version_index().is_some());
            let text = match versioned {
                Some(_) => st.update_versioned.as_str(),
                None => st.update.as_str(),
            };
            let (st, key_ref) = (&st, &key);
            let current: Option<Option<u64>> = self
                .call(Access::Write, |mut conn| async move {
                    let mut params: Vec<_> = st
                        .update_params
                        .iter()
                        .map(|&i| param(&record.values()[i]))
                        .collect();
                    params.extend(versioned.map(mysql_async::Value::UInt));
                    conn.exec_drop(text, Params::Positional(params)).await?;
                    if conn.affected_rows() > 0 {
                        return Ok(None);
                    }
                    let current: Option<mysql_async::Value> = conn
                        .exec_first(st.version_of.as_str(), (key_param(key_ref),))
                        .await?;
                    Ok::<_, mysql_async::Error>(Some(current.map(sql::version_number)))
                })
                .await?;
            match current {
                None => Ok(()),
                Some(None) => Err(Error::not_found(schema.table(), key.to_string())),
                Some(Some(actual)) => Err(Error::Conflict {
                    table: schema.table(),
                    key: key.to_string(),
                    expected: expected_version.unwrap_or_default(),
                    actual,
                }),
            }
        })
    }

    fn delete<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            check_text_key(schema, key)?;
            let st = self.statements(schema);
            let text = st.delete.as_str();
            self.call(Access::Write, |mut conn| async move {
                conn.exec_drop(text, (key_param(key),)).await?;
                Ok::<_, mysql_async::Error>(conn.affected_rows() > 0)
            })
            .await
        })
    }

    fn validate(&self, schema: &'static Schema, record: &Record) -> Result<()> {
        check_record(schema, record)?;
        // NaN and infinities, and text keys longer than the key column.
        sql::check_storable(schema, record)
    }

    fn apply<'a>(
        &'a self, schema: &'static Schema, changes: &'a [Change],
    ) -> BoxFuture<'a, Result<Vec<Result<()>>>> {
        Box::pin(apply::apply(self, schema, changes))
    }

    fn scan<'a>(
        &'a self, schema: &'static Schema, after: Option<&'a Key>, limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        Box::pin(async move {
            let st = self.statements(schema);
            let limit = mysql_async::Value::UInt(limit as u64);
            match after {
                None => self.fetch(schema, &st.scan_first, &[limit]).await,
                Some(k) => {
                    check_text_key(schema, k)?;
                    self.fetch(schema, &st.scan_after, &[key_param(k), limit])
                        .await
                }
            }
        })
    }
}
