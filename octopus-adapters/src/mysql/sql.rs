//! SQL text for a schema, value mapping between `Value` and MySQL, error
//! classification, and the check of an existing table.

use mysql_async::Value as My;
use octopus::{ColumnType, Error, Key, Record, Schema, Value};

/// `name` quoted as a MySQL identifier. Names are validated identifiers
/// already; quoting keeps keywords usable as column names.
pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Longest text key, in characters (`VARCHAR(768)` in utf8mb4 is 3072
/// bytes, InnoDB's index limit).
pub(crate) const MAX_TEXT_KEY_CHARS: usize = 768;

/// The column type a field gets.
pub(crate) fn sql_type(schema: &'static Schema, index: usize) -> &'static str {
    let is_key = index == schema.key_index();
    match schema.columns()[index].ty() {
        ColumnType::Bool => "BOOLEAN",
        ColumnType::I8 => "TINYINT",
        ColumnType::I16 => "SMALLINT",
        ColumnType::I32 => "INT",
        ColumnType::I64 => "BIGINT",
        ColumnType::U8 => "TINYINT UNSIGNED",
        ColumnType::U16 => "SMALLINT UNSIGNED",
        ColumnType::U32 => "INT UNSIGNED",
        ColumnType::U64 => "BIGINT UNSIGNED",
        ColumnType::F32 => "FLOAT",
        ColumnType::F64 => "DOUBLE",
        ColumnType::Uuid => "CHAR(36)",
        ColumnType::Text if is_key => "VARCHAR(768)",
        ColumnType::Text | ColumnType::Json => "LONGTEXT",
        ColumnType::Bytes => "LONGBLOB",
        _ => "LONGTEXT",
    }
}

/// Statement texts of one schema, built once per store and schema.
pub(crate) struct Statements {
    pub select: String,
    pub select_columns: String,
    pub key: String,
    pub insert: String,
    pub upsert: String,
    pub upsert_tail: String,
    pub insert_head: String,
    pub row_marks: String,
    pub update: String,
    pub update_versioned: String,
    /// Column indexes bound by `update`, in parameter order (key last).
    pub update_params: Vec<usize>,
    pub version_of: String,
    pub delete: String,
    pub delete_head: String,
    pub scan_first: String,
    pub scan_after: String,
    pub create: String,
    /// `SELECT` of the key and the version (the key alone for a model
    /// without one), up to `WHERE key IN (`: the locking read of `apply`.
    pub lock_head: String,
    /// `SELECT` of every column, up to `WHERE key IN (`: the second locking
    /// read of `apply`, of the keys whose changes only the whole row
    /// decides (a change whose exact row is already stored was applied
    /// before a crash, or by a commit the client gave up on, and passes).
    pub lock_rows_head: String,
}

impl Statements {
    pub fn new(schema: &'static Schema) -> Self {
        let table = quote(schema.table());
        let cols: Vec<String> = schema.columns().iter().map(|c| quote(c.name())).collect();
        let list = cols.join(", ");
        let key = quote(schema.key_column().name());
        let row_marks = format!("({})", vec!["?"; cols.len()].join(", "));
        let insert_head = format!("INSERT INTO {table} ({list}) VALUES ");
        let others: Vec<String> = cols
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != schema.key_index())
            .map(|(_, c)| format!("{c} = VALUES({c})"))
            .collect();
        let upsert_tail = if others.is_empty() {
            format!(" ON DUPLICATE KEY UPDATE {key} = {key}")
        } else {
            format!(" ON DUPLICATE KEY UPDATE {}", others.join(", "))
        };
        let update_params: Vec<usize> = (0..cols.len())
            .filter(|i| *i != schema.key_index() && Some(*i) != schema.created_at_index())
            .chain(std::iter::once(schema.key_index()))
            .collect();
        let set: Vec<String> = update_params[..update_params.len() - 1]
            .iter()
            .map(|&i| format!("{} = ?", cols[i]))
            .collect();
        let set = if set.is_empty() {
            format!("{key} = {key}")
        } else {
            set.join(", ")
        };
        let update = format!("UPDATE {table} SET {set} WHERE {key} = ?");
        let (update_versioned, version_of) = match schema.version_index() {
            Some(v) => (
                format!("{update} AND {} = ?", cols[v]),
                format!("SELECT {} FROM {table} WHERE {key} = ?", cols[v]),
            ),
            None => (
                update.clone(),
                format!("SELECT 0 FROM {table} WHERE {key} = ?"),
            ),
        };
        let create = create_table(schema, &cols);
        Statements {
            select: format!("SELECT {list} FROM {table} WHERE {key} = ?"),
            select_columns: format!("SELECT {list} FROM {table}"),
            insert: format!("{insert_head}{row_marks}"),
            upsert: format!("{insert_head}{row_marks}{upsert_tail}"),
            upsert_tail,
            insert_head,
            row_marks,
            update,
            update_versioned,
            update_params,
            version_of,
            delete: format!("DELETE FROM {table} WHERE {key} = ?"),
            delete_head: format!("DELETE FROM {table}"),
            scan_first: format!("SELECT {list} FROM {table} ORDER BY {key} LIMIT ?"),
            scan_after: format!(
                "SELECT {list} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?"
            ),
            lock_head: match schema.version_index() {
                Some(v) => format!("SELECT {key}, {} FROM {table} WHERE {key} IN (", cols[v]),
                None => format!("SELECT {key} FROM {table} WHERE {key} IN ("),
            },
            lock_rows_head: format!("SELECT {list} FROM {table} WHERE {key} IN ("),
            key,
            create,
        }
    }

    /// `INSERT` of `rows` rows.
    pub fn insert_rows(&self, rows: usize) -> String {
        let groups = vec![self.row_marks.as_str(); rows].join(", ");
        format!("{}{groups}", self.insert_head)
    }

    /// `INSERT … ON DUPLICATE KEY UPDATE` of `rows` rows.
    pub fn upsert_rows(&self, rows: usize) -> String {
        format!("{}{}", self.insert_rows(rows), self.upsert_tail)
    }

    /// `DELETE` of `keys` keys.
    pub fn delete_keys(&self, keys: usize) -> String {
        format!(
            "{} WHERE {} IN ({})",
            self.delete_head,
            self.key,
            marks(keys)
        )
    }

    /// The locking read of `keys` keys' versions.
    pub fn lock_keys(&self, keys: usize) -> String {
        format!("{}{}) FOR UPDATE", self.lock_head, marks(keys))
    }

    /// The locking read of `keys` keys' whole rows.
    pub fn lock_rows(&self, keys: usize) -> String {
        format!("{}{}) FOR UPDATE", self.lock_rows_head, marks(keys))
    }
}

/// `CREATE TABLE IF NOT EXISTS` of `schema`, whose quoted columns are `cols`.
fn create_table(schema: &'static Schema, cols: &[String]) -> String {
    let table = quote(schema.table());
    let key = &cols[schema.key_index()];
    let defs: Vec<String> = schema
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let null = if c.nullable() && i != schema.key_index() {
                "NULL"
            } else {
                "NOT NULL"
            };
            format!("{} {} {null}", cols[i], sql_type(schema, i))
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} ({}, PRIMARY KEY ({key})) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin",
        defs.join(", ")
    )
}

/// `?, ?, …`: `n` placeholders.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// A stored version as a number (0 for one that cannot be a version).
pub(crate) fn version_number(value: My) -> u64 {
    match value {
        My::Int(i) => u64::try_from(i).unwrap_or_default(),
        My::UInt(u) => u,
        My::Bytes(b) => String::from_utf8_lossy(&b).parse().unwrap_or_default(),
        _ => 0,
    }
}

/// A value as a statement parameter.
pub(crate) fn param(value: &Value) -> My {
    match value {
        Value::Null => My::NULL,
        Value::Bool(b) => My::Int(i64::from(*b)),
        Value::Int(i) => My::Int(*i),
        Value::UInt(u) => My::UInt(*u),
        Value::Float(f) => My::Double(*f),
        Value::Text(s) => My::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => My::Bytes(b.clone()),
    }
}

/// A key as a statement parameter.
pub(crate) fn key_param(key: &Key) -> My {
    match key {
        Key::Int(i) => My::Int(*i),
        Key::UInt(u) => My::UInt(*u),
        Key::Text(s) => My::Bytes(s.as_bytes().to_vec()),
    }
}

/// Refuses what MySQL cannot hold, before anything is sent: NaN and
/// infinities, and text keys over the key column's length.
pub(crate) fn check_storable(schema: &'static Schema, record: &Record) -> Result<(), Error> {
    for (column, value) in schema.columns().iter().zip(record.values()) {
        if let Value::Float(f) = value
            && !f.is_finite()
        {
            return Err(Error::invalid(format!(
                "table `{}`, column `{}`: MySQL cannot store {f} (only finite floats)",
                schema.table(),
                column.name()
            )));
        }
    }
    if let Some(Value::Text(k)) = record.get(schema.key_index()) {
        check_key_length(schema, k)?;
    }
    Ok(())
}

pub(crate) fn check_key_length(schema: &'static Schema, key: &str) -> Result<(), Error> {
    let chars = key.chars().count();
    if chars > MAX_TEXT_KEY_CHARS {
        return Err(Error::invalid(format!(
            "table `{}`, key column `{}`: a key of {chars} characters is longer than MySQL's {MAX_TEXT_KEY_CHARS}",
            schema.table(),
            schema.key_column().name()
        )));
    }
    Ok(())
}

/// Turns a row into a record in schema order.
pub(crate) fn read_row(schema: &'static Schema, row: mysql_async::Row) -> Result<Record, Error> {
    let values = row.unwrap();
    schema.check_row_width(values.len())?;
    let mut out = Vec::with_capacity(values.len());
    for (index, v) in values.into_iter().enumerate() {
        out.push(read_value(schema, index, v)?);
    }
    Ok(Record::new(out))
}

/// Turns the value of column `index` into a [`Value`] of its type.
pub(crate) fn read_value(schema: &'static Schema, index: usize, v: My) -> Result<Value, Error> {
    let column = &schema.columns()[index];
    let fail = |reason: String| Error::Decode {
        table: schema.table(),
        column: column.name(),
        reason,
    };
    let ty = column.ty();
    Ok(match v {
        My::NULL => Value::Null,
        My::Int(i) => match ty {
            ColumnType::Bool => Value::Bool(i != 0),
            t if t.is_unsigned_int() => {
                Value::UInt(u64::try_from(i).map_err(|e| fail(e.to_string()))?)
            }
            ColumnType::F32 | ColumnType::F64 => Value::Float(i as f64),
            _ => Value::Int(i),
        },
        My::UInt(u) => match ty {
            ColumnType::Bool => Value::Bool(u != 0),
            t if t.is_signed_int() => {
                Value::Int(i64::try_from(u).map_err(|e| fail(e.to_string()))?)
            }
            _ => Value::UInt(u),
        },
        My::Float(f) => Value::Float(f64::from(f)),
        My::Double(d) => Value::Float(d),
        My::Bytes(b) => match ty {
            ColumnType::Bytes => Value::Bytes(b),
            ColumnType::Text | ColumnType::Uuid | ColumnType::Json => {
                Value::Text(String::from_utf8(b).map_err(|e| fail(e.to_string()))?)
            }
            other => {
                let text = String::from_utf8_lossy(&b);
                parse_text(other, &text)
                    .ok_or_else(|| fail(format!("cannot read {text:?} as {}", other.name())))?
            }
        },
        other => return Err(fail(format!("unexpected MySQL value {other:?}"))),
    })
}

/// Numbers sent as text (the text protocol, or DECIMAL arithmetic).
fn parse_text(ty: ColumnType, text: &str) -> Option<Value> {
    match ty {
        ColumnType::Bool => text.parse::<i64>().ok().map(|i| Value::Bool(i != 0)),
        t if t.is_signed_int() => text.parse().ok().map(Value::Int),
        t if t.is_unsigned_int() => text.parse().ok().map(Value::UInt),
        ColumnType::F32 | ColumnType::F64 => text.parse().ok().map(Value::Float),
        _ => None,
    }
}

/// MySQL server error codes that mean the server cannot serve now.
const UNAVAILABLE_CODES: &[u16] = &[
    1040, // too many connections
    1053, // server shutdown in progress
    1077, // normal shutdown
    1079, // shutdown complete
    1081, // can't create IP socket
    1129, // host blocked after connection errors
    1152, // aborted connection
    1158, 1159, 1160, 1161, // network read/write errors and timeouts
    1203, // user has too many connections
    1290, // --read-only: a replica, or a primary being failed over
    1317, // query interrupted (KILL QUERY, shutdown)
    1836, // read-only mode
    1927, // connection killed
    4031, // disconnected by the server (idle)
];

/// Server error codes after which the server has rolled the statement (or
/// a deadlock victim's whole transaction) back: running the call again is
/// safe. When the attempts run out they are [`Error::Unavailable`] too.
const ROLLED_BACK_CODES: &[u16] = &[
    1205, // lock wait timeout
    1213, // deadlock
    1969, // max_statement_time exceeded
];

/// SQLSTATE of a write refused by a read-only server or transaction.
const READ_ONLY_STATE: &str = "25006";

/// Whether the server rolled `e`'s statement back for a reason that may not
/// hold a moment later (a deadlock, a lock wait or the statement time
/// limit), so the call can be run again.
pub(crate) fn is_rolled_back(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if ROLLED_BACK_CODES.contains(&s.code))
}

/// Sorts a driver error into the class a caller acts on.
pub(crate) fn classify(store: &str, e: mysql_async::Error) -> Error {
    use mysql_async::{DriverError, Error as E};
    match e {
        E::Io(_) | E::Other(_) => Error::unavailable(store, e),
        E::Driver(
            DriverError::ConnectionClosed
            | DriverError::PoolDisconnected
            | DriverError::PacketOutOfOrder
            | DriverError::UnexpectedPacket { .. }
            | DriverError::BadCompressedPacketHeader,
        ) => Error::unavailable(store, e),
        E::Server(s)
            if UNAVAILABLE_CODES.contains(&s.code)
                || ROLLED_BACK_CODES.contains(&s.code)
                || s.state == READ_ONLY_STATE
                || (2000..2100).contains(&s.code) =>
        {
            Error::unavailable(store, format!("server error {}: {}", s.code, s.message))
        }
        E::Server(s) => Error::rejected(
            store.to_owned(),
            format!("error {} ({}): {}", s.code, s.state, s.message),
        ),
        E::Url(_) => Error::config(store.to_owned(), "invalid MySQL URL"),
        E::Driver(d) => Error::rejected(store.to_owned(), d.to_string()),
    }
}

/// Whether `e` is a duplicate-key error (1062).
/// Whether `e` is a duplicate of the primary key (1062 on `PRIMARY`). A
/// duplicate on another unique index (one a DBA added) is not "the key
/// exists": it stays a rejection with the server's message.
pub(crate) fn is_duplicate(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1062 && s.message.contains("'PRIMARY'"))
}

#[cfg(test)]
mod tests {
    use mysql_async::{Error as E, ServerError};

    use super::{classify, is_rolled_back};

    fn server(code: u16, state: &str) -> E {
        E::Server(ServerError {
            code,
            message: "m".into(),
            state: state.into(),
        })
    }

    #[test]
    fn failover_and_rolled_back_errors_are_unavailable() {
        for (code, state) in [
            (1290, "HY000"),
            (1836, "HY000"),
            (1792, "25006"),
            (1317, "70100"),
            (1927, "08S01"),
            (1205, "HY000"),
            (1213, "40001"),
            (1969, "70100"),
        ] {
            let e = classify("s", server(code, state));
            assert!(e.is_unavailable(), "{code}: {e:?}");
        }
        assert!(is_rolled_back(&server(1213, "40001")));
        assert!(!is_rolled_back(&server(1290, "HY000")));
        let e = classify("s", server(1452, "23000"));
        assert!(
            matches!(&e, octopus::Error::Rejected { message, .. } if message.contains("1452")),
            "{e:?}"
        );
    }
}
