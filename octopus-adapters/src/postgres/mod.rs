//! The PostgreSQL store ([`PostgresStore`]), on tokio-postgres.
//!
//! # Connections
//!
//! A pool of `pool_size` connections (default 16) from deadpool-postgres:
//! a maintained pool whose checkout does no round trip when recycling is
//! [`RecyclingMethod::Fast`] (it only checks that the connection is open;
//! no `DISCARD ALL`, which would also drop the prepared statements), and
//! which keeps a cache of prepared statements per connection. Connections
//! are opened on demand up to the size and then kept: no churn under load.
//! tokio-postgres sets `TCP_NODELAY` on every connection it opens.
//!
//! Every call, the checkout included, is bounded by one deadline
//! (`deadline_ms`, default 2000): a server that accepts but never answers
//! fails the call with [`Error::Unavailable`] when it passes. The server
//! bounds each statement and lock wait below that deadline
//! (`statement_timeout` and `lock_timeout` at three quarters of it, sent
//! with each connection's startup); a connection whose call was given up on
//! is closed, not returned to the pool, so a write the client gave up on
//! does not commit later.
//!
//! # Errors
//!
//! By SQLSTATE: connection failures (class 08), shutdown, crash and
//! recovery (57P01 to 57P03), too many connections and exhausted resources
//! (class 53), a read-only transaction (25006, a standby) are
//! [`Error::Unavailable`]; a serialization failure, a deadlock, a lock or
//! statement timeout (40001, 40P01, 55P03, 57014) are run again, three
//! attempts in all while the deadline allows, then are `Unavailable`; a
//! duplicate primary key (23505 on it) is [`Error::AlreadyExists`];
//! everything else is [`Error::Rejected`] with the server's message.
//!
//! # Conditional changes
//!
//! [`Store::apply`] runs in one `READ COMMITTED` transaction that locks the
//! present keys with `SELECT … WHERE key = ANY($1) FOR UPDATE`; a key
//! absent at that read is inserted, and a concurrent insert of it makes the
//! transaction run again.
//!
//! # Tables
//!
//! One typed column per field: `boolean`, `smallint`/`integer`/`bigint`
//! (an unsigned field takes the next wider type; `u64` is kept bit for bit
//! as the two's complement in a `bigint`, and scans still return its keys
//! in unsigned order), `real`, `double precision` (NaN, infinities and
//! `-0.0` round-trip), `text` (keys `COLLATE "C"`: byte order, as on the
//! other stores), `uuid`, `bytea`, and `jsonb` for json fields. An existing
//! table may use wider types, `varchar`, or `json`/`text` for json fields
//! (those keep the text exactly; `jsonb` normalizes it, which the replay's
//! check of an already-stored row allows for). Text cannot hold NUL, and a
//! text key is at most 2048 bytes: both are refused before anything is
//! sent, naming the column.
//!
//! # Runtimes
//!
//! Each connection's I/O runs as a task on the tokio runtime that opened
//! it: create a `PostgresStore` in the runtime that will use it, as an
//! application does at startup. Creating the store does not connect.
//!
//! [`RecyclingMethod::Fast`]: deadpool_postgres::RecyclingMethod::Fast

mod apply;
mod call;
mod error;
mod sql;
mod table;
mod url;
mod values;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use octopus::{
    BoxFuture, Change, Error, Key, Record, Result, Schema, Store, check_key, check_record, key_of,
};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::limits::Limits;
use crate::lock::RwLockExt;
use crate::per_schema::PerSchema;
use call::{Access, Params};
use sql::Statements;
use values::{KeyParam, Param};

/// A [`Store`] on a PostgreSQL database. Cheap to clone (one `Arc`).
///
/// ```no_run
/// # async fn demo() -> octopus::Result<()> {
/// use octopus_adapters::postgres::PostgresStore;
/// let store = PostgresStore::new("postgres://app@127.0.0.1:5432/shop?pool_size=32&deadline_ms=500")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    pool: Pool,
    limits: Limits,
    statements: PerSchema<Statements>,
    /// Each table's primary key constraint, read by `ensure_schema`.
    primary_keys: RwLock<HashMap<&'static str, String>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("name", &self.inner.name)
            .field("deadline", &self.inner.limits.deadline())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A store for `url`: `postgres://user[:password]@host[:port]/database`,
    /// with optional query parameters `pool_size` (default 16),
    /// `deadline_ms` (default 2000), `schema` (the schema tables are
    /// created and found in: the session's `search_path`) and
    /// `application_name`. Does not connect: the first call does.
    pub fn new(url: &str) -> Result<Self> {
        let settings = url::parse(url)?;
        let manager = Manager::from_config(
            settings.config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::config(settings.name.clone(), e.to_string()))?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                name: settings.name,
                pool,
                limits: settings.limits,
                statements: PerSchema::default(),
                primary_keys: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        self.inner.limits.deadline()
    }

    /// Checks that the server answers within the deadline.
    pub async fn ping(&self) -> Result<()> {
        self.call(Access::Read, |mut conn, _| async move {
            conn.batch("SELECT 1").await
        })
        .await
    }

    /// The server's version (its `server_version` setting), within the
    /// deadline.
    pub async fn server_version(&self) -> Result<String> {
        let rows = self
            .call(Access::Read, |mut conn, _| async move {
                conn.query("SELECT current_setting('server_version')", &[])
                    .await
            })
            .await?;
        Ok(rows
            .first()
            .and_then(|row| row.try_get::<_, String>(0).ok())
            .unwrap_or_default())
    }

    fn statements(&self, schema: &'static Schema) -> Arc<Statements> {
        self.inner.statements.get(schema, Statements::new)
    }

    /// The name of `schema`'s table's primary key constraint: as read by
    /// `ensure_schema`, else the name PostgreSQL gives the one it creates.
    fn primary_key(&self, schema: &'static Schema) -> String {
        self.inner
            .primary_keys
            .reading()
            .get(schema.table())
            .cloned()
            .unwrap_or_else(|| format!("{}_pkey", schema.table()))
    }

    async fn fetch(
        &self, schema: &'static Schema, text: &str, params: &Params<'_>,
    ) -> Result<Vec<Record>> {
        let rows = self
            .call(Access::Read, |mut conn, _| async move {
                conn.query(text, params).await
            })
            .await?;
        rows.iter()
            .map(|row| values::read_row(schema, row))
            .collect()
    }

    /// Runs `text` with `params` as one write; returns the rows it changed.
    async fn execute(&self, text: &str, params: &Params<'_>) -> Result<u64> {
        self.call(Access::Write, |mut conn, _| async move {
            conn.execute(text, params).await
        })
        .await
    }
}

/// A record's values as statement parameters.
fn params_of(record: &Record) -> Vec<Param<'_>> {
    record.values().iter().map(Param).collect()
}

/// `params` as the driver takes them.
fn refs<T: ToSql + Sync>(params: &[T]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

fn check_pg_key(schema: &'static Schema, key: &Key) -> Result<()> {
    check_key(schema, key)?;
    if let Key::Text(k) = key {
        values::check_text_key(schema, k)?;
    }
    Ok(())
}

impl Store for PostgresStore {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn ensure_schema<'a>(&'a self, schema: &'static Schema) -> BoxFuture<'a, Result<()>> {
        Box::pin(table::ensure(self, schema))
    }

    fn get<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async move {
            check_pg_key(schema, key)?;
            let st = self.statements(schema);
            let rows = self.fetch(schema, &st.select, &[&KeyParam(key)]).await?;
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
            keys.iter().try_for_each(|k| check_pg_key(schema, k))?;
            let st = self.statements(schema);
            let keys_param: Vec<KeyParam<'_>> = keys.iter().map(KeyParam).collect();
            let rows = self.fetch(schema, &st.select_many, &[&keys_param]).await?;
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
            let (text, params) = (st.insert.as_str(), params_of(record));
            let params = &refs(&params)[..];
            let (name, primary_key) = (&self.inner.name, self.primary_key(schema));
            self.call_with(
                Access::Write,
                |mut conn, _| async move { conn.execute(text, params).await },
                error::is_rolled_back,
                |e| {
                    if !error::is_duplicate_key(&e, &primary_key) {
                        return error::classify(name, e);
                    }
                    match key_of(schema, record) {
                        Ok(k) => Error::already_exists(schema.table(), k.to_string()),
                        Err(e) => e,
                    }
                },
            )
            .await
            .map(drop)
        })
    }

    fn upsert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.validate(schema, record)?;
            let st = self.statements(schema);
            let params = params_of(record);
            self.execute(&st.upsert, &refs(&params)).await.map(drop)
        })
    }

    fn upsert_many<'a>(
        &'a self, schema: &'static Schema, records: &'a [Record],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(apply::upsert_many(self, schema, records))
    }

    fn delete_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            keys.iter().try_for_each(|k| check_pg_key(schema, k))?;
            let st = self.statements(schema);
            let keys_param: Vec<KeyParam<'_>> = keys.iter().map(KeyParam).collect();
            self.execute(&st.delete_many, &[&keys_param])
                .await
                .map(drop)
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
            let version = versioned.map(octopus::Value::UInt);
            let mut params: Vec<Param<'_>> = st
                .update_params
                .iter()
                .map(|&i| Param(&record.values()[i]))
                .collect();
            params.extend(version.as_ref().map(Param));
            let (params, st, key) = (&refs(&params)[..], &st, &key);
            let current: Option<Option<u64>> = self
                .call(Access::Write, |mut conn, _| async move {
                    if conn.execute(text, params).await? > 0 {
                        return Ok(None);
                    }
                    let rows = conn.query(&st.version_of, &[&KeyParam(key)]).await?;
                    Ok::<_, tokio_postgres::Error>(Some(rows.first().map(values::version_number)))
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
            check_pg_key(schema, key)?;
            let st = self.statements(schema);
            Ok(self.execute(&st.delete, &[&KeyParam(key)]).await? > 0)
        })
    }

    fn validate(&self, schema: &'static Schema, record: &Record) -> Result<()> {
        check_record(schema, record)?;
        values::check_storable(schema, record)
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
            if let Some(k) = after {
                check_pg_key(schema, k)?;
            }
            let st = self.statements(schema);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            if !schema.key_column().ty().is_unsigned_int() {
                return match after {
                    None => self.fetch(schema, &st.scan_first, &[&limit]).await,
                    Some(k) => {
                        self.fetch(schema, &st.scan_after, &[&KeyParam(k), &limit])
                            .await
                    }
                };
            }
            scan_unsigned(self, schema, &st, after, limit).await
        })
    }
}

/// A scan of an unsigned key: the `bigint` holds a `u64`'s two's
/// complement, so keys up to `i64::MAX` are the stored values from 0 up and
/// the keys above are the negative ones, from `i64::MIN` up.
async fn scan_unsigned(
    store: &PostgresStore, schema: &'static Schema, st: &Statements, after: Option<&Key>,
    limit: i64,
) -> Result<Vec<Record>> {
    let after = match after {
        None => None,
        Some(Key::UInt(u)) => Some(*u as i64),
        Some(Key::Int(i)) => Some(*i),
        Some(other) => {
            return Err(check_pg_key(schema, other).err().unwrap_or_else(|| {
                Error::invalid(format!(
                    "table `{}`: key {other} is not a number",
                    schema.table()
                ))
            }));
        }
    };
    let mut rows = Vec::new();
    if after.is_none_or(|a| a >= 0) {
        let from = after.unwrap_or(-1);
        rows = store
            .fetch(schema, &st.scan_unsigned_low, &[&from, &limit])
            .await?;
    }
    let left = limit - rows.len() as i64;
    if left > 0 {
        // From the key after `after` if it is one of the high keys (-1,
        // u64::MAX, has none: 0 is not below 0), else from the first.
        let from = after.filter(|a| *a < 0).map_or(i64::MIN, |a| a + 1);
        rows.extend(
            store
                .fetch(schema, &st.scan_unsigned_high, &[&from, &left])
                .await?,
        );
    }
    Ok(rows)
}
