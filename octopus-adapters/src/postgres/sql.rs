//! SQL text for a schema: the column types of a created table, and the
//! statements of every call, built once per store and schema.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use octopus::{ColumnType, Schema};

use crate::lock::RwLockExt;

/// `name` quoted as a PostgreSQL identifier. Names are validated
/// identifiers already; quoting keeps keywords usable as column names and
/// keeps their case.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column type a field gets in a table the store creates. Unsigned
/// integers take the next wider signed type, except `u64`, which is kept
/// bit for bit in a `bigint` (its two's complement); text keys compare
/// byte for byte (`COLLATE "C"`), as on the other stores.
pub(crate) fn sql_type(ty: ColumnType, is_key: bool) -> &'static str {
    match ty {
        ColumnType::Bool => "boolean",
        ColumnType::I8 | ColumnType::I16 | ColumnType::U8 => "smallint",
        ColumnType::I32 | ColumnType::U16 => "integer",
        ColumnType::I64 | ColumnType::U32 | ColumnType::U64 => "bigint",
        ColumnType::F32 => "real",
        ColumnType::F64 => "double precision",
        ColumnType::Uuid => "uuid",
        ColumnType::Text if is_key => "text COLLATE \"C\"",
        ColumnType::Json => "jsonb",
        ColumnType::Bytes => "bytea",
        _ => "text",
    }
}

/// `$a, $b, …`: placeholders `from..from + n` (numbered from 1).
fn marks(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Statement texts of one schema.
pub(crate) struct Statements {
    pub table: String,
    pub columns: usize,
    pub select: String,
    pub select_many: String,
    pub insert: String,
    pub upsert: String,
    insert_head: String,
    upsert_tail: String,
    pub update: String,
    pub update_versioned: String,
    /// Column indexes bound by `update`, in parameter order (key last).
    pub update_params: Vec<usize>,
    pub version_of: String,
    pub delete: String,
    pub delete_many: String,
    pub scan_first: String,
    pub scan_after: String,
    /// Scans of an unsigned key, whose `bigint` holds the two's complement
    /// of a `u64`: the keys above `$1` and at or above 0 first, then those
    /// from `$1` up and below 0.
    pub scan_unsigned_low: String,
    pub scan_unsigned_high: String,
    pub create: String,
    /// The locking read of keys and versions (keys alone for a model
    /// without a version): the first read of `apply`.
    pub lock_keys: String,
    /// The locking read of whole rows: the second read of `apply`.
    pub lock_rows: String,
    /// The multi-row statements built so far, by kind (upsert or insert)
    /// and row count: a handful per table (the run sizes of
    /// `apply::runs`), each built once instead of on every batch (a text
    /// of 512 rows is 1,536 placeholders, about 10 KB).
    multirow: RwLock<HashMap<(bool, usize), Arc<str>>>,
}

impl Statements {
    pub fn new(schema: &'static Schema) -> Self {
        let table = quote(schema.table());
        let cols: Vec<String> = schema.columns().iter().map(|c| quote(c.name())).collect();
        let list = cols.join(", ");
        let key = quote(schema.key_column().name());
        let insert_head = format!("INSERT INTO {table} ({list}) VALUES ");
        let others: Vec<String> = cols
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != schema.key_index())
            .map(|(_, c)| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let upsert_tail = if others.is_empty() {
            format!(" ON CONFLICT ({key}) DO NOTHING")
        } else {
            format!(" ON CONFLICT ({key}) DO UPDATE SET {}", others.join(", "))
        };
        let update_params: Vec<usize> = (0..cols.len())
            .filter(|i| *i != schema.key_index() && Some(*i) != schema.created_at_index())
            .chain(std::iter::once(schema.key_index()))
            .collect();
        let set: Vec<String> = update_params[..update_params.len() - 1]
            .iter()
            .enumerate()
            .map(|(n, &i)| format!("{} = ${}", cols[i], n + 1))
            .collect();
        let set = if set.is_empty() {
            format!("{key} = {key}")
        } else {
            set.join(", ")
        };
        let n = update_params.len();
        let update = format!("UPDATE {table} SET {set} WHERE {key} = ${n}");
        let (update_versioned, version_of, lock_keys) = match schema.version_index() {
            Some(v) => (
                format!("{update} AND {} = ${}", cols[v], n + 1),
                format!("SELECT {} FROM {table} WHERE {key} = $1", cols[v]),
                format!(
                    "SELECT {key}, {} FROM {table} WHERE {key} = ANY($1) FOR UPDATE",
                    cols[v]
                ),
            ),
            None => (
                update.clone(),
                format!("SELECT 0::bigint FROM {table} WHERE {key} = $1"),
                format!("SELECT {key} FROM {table} WHERE {key} = ANY($1) FOR UPDATE"),
            ),
        };
        let select_all = format!("SELECT {list} FROM {table}");
        Statements {
            select: format!("{select_all} WHERE {key} = $1"),
            select_many: format!("{select_all} WHERE {key} = ANY($1)"),
            insert: format!("{insert_head}({})", marks(1, cols.len())),
            upsert: format!("{insert_head}({}){upsert_tail}", marks(1, cols.len())),
            update,
            update_versioned,
            update_params,
            version_of,
            delete: format!("DELETE FROM {table} WHERE {key} = $1"),
            delete_many: format!("DELETE FROM {table} WHERE {key} = ANY($1)"),
            scan_first: format!("{select_all} ORDER BY {key} LIMIT $1"),
            scan_after: format!("{select_all} WHERE {key} > $1 ORDER BY {key} LIMIT $2"),
            scan_unsigned_low: format!(
                "{select_all} WHERE {key} > $1 AND {key} >= 0 ORDER BY {key} LIMIT $2"
            ),
            scan_unsigned_high: format!(
                "{select_all} WHERE {key} >= $1 AND {key} < 0 ORDER BY {key} LIMIT $2"
            ),
            lock_keys,
            lock_rows: format!("{select_all} WHERE {key} = ANY($1) FOR UPDATE"),
            create: create_table(schema, &cols),
            columns: cols.len(),
            insert_head,
            upsert_tail,
            table,
            multirow: RwLock::new(HashMap::new()),
        }
    }

    /// `INSERT` of `rows` rows.
    pub fn insert_rows(&self, rows: usize) -> Arc<str> {
        self.multirow(false, rows)
    }

    /// `INSERT … ON CONFLICT … DO UPDATE` of `rows` rows (of distinct keys:
    /// PostgreSQL refuses one statement that updates a row twice).
    pub fn upsert_rows(&self, rows: usize) -> Arc<str> {
        self.multirow(true, rows)
    }

    fn multirow(&self, upsert: bool, rows: usize) -> Arc<str> {
        if let Some(text) = self.multirow.reading().get(&(upsert, rows)) {
            return text.clone();
        }
        let mut text = String::with_capacity(self.insert_head.len() + rows * self.columns * 8);
        text.push_str(&self.insert_head);
        for r in 0..rows {
            text.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..self.columns {
                let sep = if c == 0 { "" } else { ", " };
                let _ = write!(text, "{sep}${}", r * self.columns + c + 1);
            }
            text.push(')');
        }
        if upsert {
            text.push_str(&self.upsert_tail);
        }
        self.multirow
            .writing()
            .entry((upsert, rows))
            .or_insert_with(|| text.into())
            .clone()
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
            let is_key = i == schema.key_index();
            let null = if c.nullable() && !is_key {
                "NULL"
            } else {
                "NOT NULL"
            };
            format!("{} {} {null}", cols[i], sql_type(c.ty(), is_key))
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} ({}, PRIMARY KEY ({key}))",
        defs.join(", ")
    )
}

/// The catalogue's view of a table's columns: name, declared type, type
/// name, nullable, part of the primary key, has a default. `$1` is the
/// table's quoted name (resolved through the search path).
pub(crate) const COLUMNS_OF: &str = "\
    SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, \
           NOT a.attnotnull, COALESCE(i.indisprimary, false), a.atthasdef \
    FROM pg_attribute a \
    JOIN pg_type t ON t.oid = a.atttypid \
    LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY(i.indkey) \
    WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
    ORDER BY a.attnum";

/// The name of a table's primary key constraint (`$1`: its quoted name).
pub(crate) const PRIMARY_KEY_OF: &str =
    "SELECT conname::text FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'";

#[cfg(test)]
mod tests {
    use super::*;
    use octopus::Column;

    const COLS: &[Column] = &[
        Column::new("id", ColumnType::U64, false),
        Column::new("name", ColumnType::Text, false),
        Column::new("value", ColumnType::I64, true),
    ];
    static SCHEMA: Schema = Schema::new("things", COLS, 0, None, None, None);

    #[test]
    fn multirow_statements_number_every_row_and_are_built_once() {
        let st = Statements::new(&SCHEMA);
        let head = r#"INSERT INTO "things" ("id", "name", "value") VALUES "#;
        let tail = r#" ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name", "value" = EXCLUDED."value""#;
        assert_eq!(&*st.insert_rows(1), format!("{head}($1, $2, $3)"));
        assert_eq!(
            &*st.upsert_rows(2),
            format!("{head}($1, $2, $3), ($4, $5, $6){tail}")
        );
        assert_eq!(&*st.insert, &*st.insert_rows(1));
        assert_eq!(&*st.upsert, &*st.upsert_rows(1));
        let last = st.upsert_rows(512);
        assert!(last.ends_with(&format!("($1534, $1535, $1536){tail}")));
        assert!(Arc::ptr_eq(&last, &st.upsert_rows(512)));
        assert!(!Arc::ptr_eq(&st.insert_rows(512), &last));
    }
}
