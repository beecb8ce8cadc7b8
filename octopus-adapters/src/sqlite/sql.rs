//! SQL text for a schema, value mapping between `Value` and SQLite, error
//! classification, and the check of an existing table.

use crate::existing_table::{self, Existing};
use octopus::{ColumnType, Error, Key, Record, Schema, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, ToSql};

/// Statement texts of one schema, built once per store and schema.
pub(crate) struct Statements {
    pub select: String,
    pub select_columns: String,
    pub insert: String,
    pub upsert: String,
    /// `UPDATE` without and with the version condition.
    pub update: String,
    pub update_versioned: String,
    pub version_of: String,
    pub delete: String,
    pub scan_first: String,
    pub scan_after: String,
    pub key: String,
}

/// `"name"`, with embedded quotes doubled. Names are validated identifiers
/// already; quoting keeps keywords (`order`, `group`) usable as columns.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Statements {
    pub fn new(schema: &'static Schema) -> Self {
        let table = quote(schema.table());
        let cols: Vec<String> = schema.columns().iter().map(|c| quote(c.name())).collect();
        let list = cols.join(", ");
        let key = quote(schema.key_column().name());
        let params: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let params = params.join(", ");
        let insert = format!("INSERT INTO {table} ({list}) VALUES ({params})");
        let others: Vec<String> = cols
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != schema.key_index())
            .map(|(_, c)| format!("{c} = excluded.{c}"))
            .collect();
        let upsert = if others.is_empty() {
            format!("{insert} ON CONFLICT({key}) DO NOTHING")
        } else {
            format!(
                "{insert} ON CONFLICT({key}) DO UPDATE SET {}",
                others.join(", ")
            )
        };
        // UPDATE binds every column at its schema position, so one record
        // binds the same way for all statements; the key and created_at are
        // bound but not assigned.
        let assigned: Vec<String> = cols
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != schema.key_index() && Some(*i) != schema.created_at_index())
            .map(|(i, c)| format!("{c} = ?{}", i + 1))
            .collect();
        let key_param = schema.key_index() + 1;
        let set = if assigned.is_empty() {
            format!("{key} = ?{key_param}")
        } else {
            assigned.join(", ")
        };
        let update = format!("UPDATE {table} SET {set} WHERE {key} = ?{key_param}");
        let update_versioned = match schema.version_index() {
            Some(v) => format!(
                "{update} AND {} = ?{}",
                quote(schema.columns()[v].name()),
                cols.len() + 1
            ),
            None => update.clone(),
        };
        let version_of = match schema.version_index() {
            Some(v) => format!(
                "SELECT {} FROM {table} WHERE {key} = ?1",
                quote(schema.columns()[v].name())
            ),
            None => format!("SELECT 0 FROM {table} WHERE {key} = ?1"),
        };
        Statements {
            select: format!("SELECT {list} FROM {table} WHERE {key} = ?1"),
            select_columns: format!("SELECT {list} FROM {table}"),
            insert,
            upsert,
            update,
            update_versioned,
            version_of,
            delete: format!("DELETE FROM {table} WHERE {key} = ?1"),
            scan_first: format!("SELECT {list} FROM {table} ORDER BY {key} LIMIT ?1"),
            scan_after: format!(
                "SELECT {list} FROM {table} WHERE {key} > ?1 ORDER BY {key} LIMIT ?2"
            ),
            key,
        }
    }
}

/// The SQLite type a column is declared with (tables are `STRICT`, so the
/// declared type is enforced).
pub(crate) fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::F32 | ColumnType::F64 => "REAL",
        ColumnType::Text | ColumnType::Uuid | ColumnType::Json => "TEXT",
        ColumnType::Bytes => "BLOB",
        // Booleans and every integer, u64 included (stored as its two's
        // complement bit pattern, so the whole range survives).
        _ => "INTEGER",
    }
}

pub(crate) fn create_table(schema: &'static Schema) -> String {
    let cols: Vec<String> = schema
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut def = format!("{} {}", quote(c.name()), sql_type(c.ty()));
            if i == schema.key_index() {
                def.push_str(" NOT NULL PRIMARY KEY");
            } else if !c.nullable() {
                def.push_str(" NOT NULL");
            }
            def
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}) STRICT",
        quote(schema.table()),
        cols.join(", ")
    )
}

/// Checks an existing table against the schema: every model column present
/// with its declared type, the key as primary key, NULL allowed where the
/// model may write one, and no extra column the model cannot fill.
pub(crate) fn check_table(conn: &Connection, schema: &'static Schema) -> Result<(), Error> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({})", quote(schema.table())))
        .map_err(|e| classify("sqlite", e))?;
    let found: Vec<Existing> = stmt
        .query_map([], |row| {
            let declared: String = row.get(2)?;
            Ok(Existing {
                name: row.get(1)?,
                data_type: declared.clone(),
                declared,
                nullable: row.get::<_, i64>(3)? == 0,
                has_default: row.get::<_, Option<String>>(4)?.is_some(),
                primary: row.get::<_, i64>(5)? != 0,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
        .map_err(|e| classify("sqlite", e))?;
    existing_table::check(schema, &found, |i, col| {
        let want = sql_type(schema.columns()[i].ty());
        if col.data_type.eq_ignore_ascii_case(want) {
            Ok(())
        } else {
            Err(want.to_owned())
        }
    })
}

/// A value bound as a statement parameter, borrowing text and bytes.
pub(crate) struct Param<'a>(pub &'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::Int(i) => ValueRef::Integer(*i),
            // Bit pattern: u64 values above i64::MAX read back exactly.
            Value::UInt(u) => ValueRef::Integer(*u as i64),
            Value::Float(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

/// A key bound as a parameter.
pub(crate) struct KeyParam<'a>(pub &'a Key);

impl ToSql for KeyParam<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Key::Int(i) => ValueRef::Integer(*i),
            Key::UInt(u) => ValueRef::Integer(*u as i64),
            Key::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

/// Refuses what SQLite would silently change: a NaN becomes NULL there.
pub(crate) fn check_storable(schema: &'static Schema, record: &Record) -> Result<(), Error> {
    for (column, value) in schema.columns().iter().zip(record.values()) {
        if let Value::Float(f) = value
            && f.is_nan()
        {
            return Err(Error::invalid(format!(
                "table `{}`, column `{}`: SQLite cannot store NaN (it would read back as NULL)",
                schema.table(),
                column.name()
            )));
        }
    }
    Ok(())
}

/// Reads one row in schema order.
pub(crate) fn read_row(
    schema: &'static Schema, row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Record> {
    let mut values = Vec::with_capacity(schema.columns().len());
    for (i, column) in schema.columns().iter().enumerate() {
        let v = match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => match column.ty() {
                ColumnType::Bool => Value::Bool(n != 0),
                t if t.is_unsigned_int() => Value::UInt(n as u64),
                ColumnType::F32 | ColumnType::F64 => Value::Float(n as f64),
                _ => Value::Int(n),
            },
            ValueRef::Real(f) => Value::Float(f),
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(s) => Value::Text(s.to_owned()),
                Err(_) => Value::Bytes(t.to_vec()),
            },
            ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        };
        values.push(v);
    }
    Ok(Record::new(values))
}

/// Sorts a rusqlite error into the class a caller acts on.
pub(crate) fn classify(store: &str, e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::OutOfMemory => return Error::unavailable(store, e),
            _ => {}
        }
    }
    Error::rejected(store.to_owned(), e.to_string())
}

/// Whether `e` is a duplicate of `schema`'s key. A violation of another
/// unique index (one a DBA added) is not "the key exists": it stays a
/// rejection with SQLite's message.
pub(crate) fn is_duplicate(e: &rusqlite::Error, schema: &'static Schema) -> bool {
    const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
    const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;
    let key = format!("{}.{}", schema.table(), schema.key_column().name());
    matches!(e, rusqlite::Error::SqliteFailure(f, message)
        if f.extended_code == SQLITE_CONSTRAINT_PRIMARYKEY
            || (f.extended_code == SQLITE_CONSTRAINT_UNIQUE
                && message.as_deref().and_then(|m| m.strip_prefix("UNIQUE constraint failed: ")) == Some(key.as_str())))
}

/// Whether `e` means the database was busy or locked (the inline read path
/// retries those on the writer thread, which may wait).
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}
