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
//! [`Error::Unavailable`] when the deadline passes.
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
//! column.

mod sql;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts};
use octopus::{
    BoxFuture, Error, Key, Record, Result, Schema, Store, check_key, check_record, key_of,
};

use crate::per_schema::PerSchema;
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
    deadline: Duration,
    statements: PerSchema<Statements>,
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore")
            .field("name", &self.inner.name)
            .field("deadline", &self.inner.deadline)
            .finish()
    }
}

/// Rows per statement in [`Store::upsert_many`] (also bounded by MySQL's
/// 65535 placeholders).
const UPSERT_BATCH: usize = 1000;

impl MysqlStore {
    /// A store for `url`: `mysql://user[:password]@host[:port]/database`,
    /// with optional `pool_size` (default 16) and `deadline_ms` (default
    /// 2000) query parameters; other query parameters go to mysql_async.
    /// Does not connect: the first call does.
    pub fn new(url: &str) -> Result<Self> {
        let config_error = |reason: String| Error::Config {
            key: redact(url),
            reason,
        };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut pool_size = 16usize;
        let mut deadline = Duration::from_millis(2000);
        let mut passthrough = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "pool_size" => {
                    pool_size = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        config_error(format!("pool_size must be a positive integer, got {v:?}"))
                    })?
                }
                "deadline_ms" => {
                    deadline = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .map(Duration::from_millis)
                        .ok_or_else(|| {
                            config_error(format!(
                                "deadline_ms must be a positive integer, got {v:?}"
                            ))
                        })?
                }
                _ => passthrough.push(pair),
            }
        }
        let url = if passthrough.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", passthrough.join("&"))
        };
        let opts = Opts::from_url(&url).map_err(|e| config_error(e.to_string()))?;
        if opts.db_name().is_none() {
            return Err(config_error(
                "the URL names no database (mysql://user@host/database)".into(),
            ));
        }
        let name = format!(
            "mysql://{}@{}:{}/{}",
            opts.user().unwrap_or(""),
            opts.ip_or_hostname(),
            opts.tcp_port(),
            opts.db_name().unwrap_or("")
        );
        let constraints = PoolConstraints::new(pool_size, pool_size)
            .ok_or_else(|| config_error("invalid pool_size".into()))?;
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            .with_reset_connection(false);
        let opts = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .client_found_rows(true)
            .tcp_nodelay(true)
            .stmt_cache_size(256)
            .pool_opts(pool_opts);
        Ok(MysqlStore {
            inner: Arc::new(Inner {
                name,
                pool: Pool::new(opts),
                deadline,
                statements: PerSchema::default(),
            }),
        })
    }

    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    /// Checks that the server answers within the deadline.
    pub async fn ping(&self) -> Result<()> {
        self.call(|mut conn| async move { conn.ping().await }).await
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

    /// Runs `f` on a pooled connection, the checkout included, within the
    /// deadline.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(mysql_async::Conn) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, mysql_async::Error>>,
    {
        self.call_with(f, |e| sql::classify(&self.inner.name, e))
            .await
    }

    async fn call_with<T, F, Fut>(
        &self,
        f: F,
        on_error: impl FnOnce(mysql_async::Error) -> Error,
    ) -> Result<T>
    where
        F: FnOnce(mysql_async::Conn) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, mysql_async::Error>>,
    {
        let work = async {
            let conn = self.inner.pool.get_conn().await?;
            f(conn).await
        };
        match tokio::time::timeout(self.inner.deadline, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(on_error(e)),
            Err(_) => Err(Error::unavailable(
                &self.inner.name,
                format!(
                    "no answer within the {} ms deadline",
                    self.inner.deadline.as_millis()
                ),
            )),
        }
    }

    async fn fetch(
        &self,
        schema: &'static Schema,
        text: String,
        params: Vec<mysql_async::Value>,
    ) -> Result<Vec<Record>> {
        let rows: Vec<mysql_async::Row> = self
            .call(|mut conn| async move { conn.exec(text, Params::Positional(params)).await })
            .await?;
        rows.into_iter()
            .map(|row| sql::read_row(schema, row))
            .collect()
    }
}

/// `url` with any password removed, for errors and logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "mysql URL".into();
    };
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}@{host}")
        }
        None => format!("{scheme}://{rest}"),
    }
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
            let create = st.create.clone();
            let found: Vec<(String, String, String, String, String, Option<String>)> = self
                .call(|mut conn| async move {
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
            let existing: Vec<sql::Existing> = found
                .into_iter()
                .map(
                    |(name, data_type, column_type, nullable, key, default)| sql::Existing {
                        name,
                        data_type,
                        column_type,
                        nullable: nullable == "YES",
                        primary: key == "PRI",
                        has_default: default.is_some(),
                    },
                )
                .collect();
            sql::check_table(schema, &existing)
        })
    }

    fn get<'a>(
        &'a self,
        schema: &'static Schema,
        key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async move {
            check_text_key(schema, key)?;
            let st = self.statements(schema);
            let rows = self
                .fetch(schema, st.select.clone(), vec![key_param(key)])
                .await?;
            Ok(rows.into_iter().next())
        })
    }

    fn get_many<'a>(
        &'a self,
        schema: &'static Schema,
        keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            for k in keys {
                check_text_key(schema, k)?;
            }
            let st = self.statements(schema);
            let marks = vec!["?"; keys.len()].join(", ");
            let text = format!("{} WHERE {} IN ({marks})", st.select_columns, st.key);
            let rows = self
                .fetch(schema, text, keys.iter().map(key_param).collect())
                .await?;
            let mut found: HashMap<Key, Record> = HashMap::with_capacity(rows.len());
            for r in rows {
                found.insert(key_of(schema, &r)?, r);
            }
            Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
        })
    }

    fn insert<'a>(
        &'a self,
        schema: &'static Schema,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            check_record(schema, record)?;
            sql::check_storable(schema, record)?;
            let st = self.statements(schema);
            let text = st.insert.clone();
            let params: Vec<_> = record.values().iter().map(param).collect();
            let name = self.inner.name.clone();
            self.call_with(
                |mut conn| async move { conn.exec_drop(text, Params::Positional(params)).await },
                |e| {
                    if sql::is_duplicate(&e) {
                        match key_of(schema, record) {
                            Ok(k) => Error::AlreadyExists {
                                table: schema.table(),
                                key: k.to_string(),
                            },
                            Err(e) => e,
                        }
                    } else {
                        sql::classify(&name, e)
                    }
                },
            )
            .await
        })
    }

    fn upsert<'a>(
        &'a self,
        schema: &'static Schema,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            check_record(schema, record)?;
            sql::check_storable(schema, record)?;
            let st = self.statements(schema);
            let text = st.upsert.clone();
            let params: Vec<_> = record.values().iter().map(param).collect();
            self.call(
                |mut conn| async move { conn.exec_drop(text, Params::Positional(params)).await },
            )
            .await
        })
    }

    fn upsert_many<'a>(
        &'a self,
        schema: &'static Schema,
        records: &'a [Record],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for r in records {
                check_record(schema, r)?;
                sql::check_storable(schema, r)?;
            }
            let st = self.statements(schema);
            let per_statement = UPSERT_BATCH.min(65_535 / schema.columns().len().max(1));
            for chunk in records.chunks(per_statement) {
                let text = format!(
                    "{}{}{}",
                    st.insert_head,
                    vec![st.row_marks.as_str(); chunk.len()].join(", "),
                    st.upsert_tail
                );
                let params: Vec<_> = chunk
                    .iter()
                    .flat_map(|r| r.values().iter().map(param))
                    .collect();
                // One text-protocol statement per batch: preparing a
                // different statement per batch size would thrash the cache.
                self.call(|mut conn| async move {
                    conn.exec_drop(text, Params::Positional(params)).await
                })
                .await?;
            }
            Ok(())
        })
    }

    fn delete_many<'a>(
        &'a self,
        schema: &'static Schema,
        keys: &'a [Key],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for k in keys {
                check_text_key(schema, k)?;
            }
            let st = self.statements(schema);
            for chunk in keys.chunks(UPSERT_BATCH) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let text = format!("{} WHERE {} IN ({marks})", st.delete_head, st.key);
                let params: Vec<_> = chunk.iter().map(key_param).collect();
                self.call(|mut conn| async move {
                    conn.exec_drop(text, Params::Positional(params)).await
                })
                .await?;
            }
            Ok(())
        })
    }

    fn update<'a>(
        &'a self,
        schema: &'static Schema,
        record: &'a Record,
        expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            check_record(schema, record)?;
            sql::check_storable(schema, record)?;
            let key = key_of(schema, record)?;
            let st = self.statements(schema);
            let mut params: Vec<_> = st
                .update_params
                .iter()
                .map(|&i| param(&record.values()[i]))
                .collect();
            let text = match (expected_version, schema.version_index()) {
                (Some(v), Some(_)) => {
                    params.push(mysql_async::Value::UInt(v));
                    st.update_versioned.clone()
                }
                _ => st.update.clone(),
            };
            let probe = st.version_of.clone();
            let key_value = key_param(&key);
            let (changed, current): (u64, Option<i128>) = self
                .call(|mut conn| async move {
                    conn.exec_drop(text, Params::Positional(params)).await?;
                    let changed = conn.affected_rows();
                    if changed > 0 {
                        return Ok((changed, None));
                    }
                    let current: Option<mysql_async::Value> =
                        conn.exec_first(probe, (key_value,)).await?;
                    let current = current.map(|v| match v {
                        mysql_async::Value::Int(i) => i128::from(i),
                        mysql_async::Value::UInt(u) => i128::from(u),
                        mysql_async::Value::Bytes(b) => {
                            String::from_utf8_lossy(&b).parse().unwrap_or(-1)
                        }
                        _ => -1,
                    });
                    Ok((0, current))
                })
                .await?;
            if changed > 0 {
                return Ok(());
            }
            Err(match current {
                None => Error::NotFound {
                    table: schema.table(),
                    key: key.to_string(),
                },
                Some(actual) => Error::Conflict {
                    table: schema.table(),
                    key: key.to_string(),
                    expected: expected_version.unwrap_or_default(),
                    actual: u64::try_from(actual).unwrap_or_default(),
                },
            })
        })
    }

    fn delete<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            check_text_key(schema, key)?;
            let st = self.statements(schema);
            let text = st.delete.clone();
            let k = key_param(key);
            self.call(|mut conn| async move {
                conn.exec_drop(text, (k,)).await?;
                Ok(conn.affected_rows() > 0)
            })
            .await
        })
    }

    fn scan<'a>(
        &'a self,
        schema: &'static Schema,
        after: Option<&'a Key>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        Box::pin(async move {
            let st = self.statements(schema);
            let limit = mysql_async::Value::UInt(limit as u64);
            match after {
                None => self.fetch(schema, st.scan_first.clone(), vec![limit]).await,
                Some(k) => {
                    check_text_key(schema, k)?;
                    self.fetch(schema, st.scan_after.clone(), vec![key_param(k), limit])
                        .await
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_appear() {
        assert_eq!(
            redact("mysql://app:s3cret@db:3306/shop?x=1"),
            "mysql://app@db:3306/shop"
        );
        assert_eq!(redact("mysql://db/shop"), "mysql://db/shop");
    }
}
