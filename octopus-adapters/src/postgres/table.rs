//! `ensure_schema`: the table created if missing, then checked against the
//! model's schema from the catalogue.

use octopus::{ColumnType, Error, Result, Schema};
use tokio_postgres::error::SqlState;

use super::PostgresStore;
use super::call::Access;
use super::sql::{self, COLUMNS_OF, PRIMARY_KEY_OF};
use crate::existing_table::{self, Existing};
use crate::lock::RwLockExt;

/// Creates `schema`'s table if it does not exist, checks the existing
/// columns, and records the primary key constraint's name (so a duplicate
/// on it, and only on it, is "the key exists").
pub(super) async fn ensure(store: &PostgresStore, schema: &'static Schema) -> Result<()> {
    let st = store.statements(schema);
    let (create, table) = (st.create.as_str(), st.table.as_str());
    let (columns, primary_key) = store
        .call(Access::Write, |mut conn, _| async move {
            match conn.batch(create).await {
                Ok(()) => {}
                // Two servers creating the table at once: one wins, the
                // other's catalogue insert clashes; the table is there.
                Err(e)
                    if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                        || e.code() == Some(&SqlState::DUPLICATE_TABLE) => {}
                Err(e) => return Err(e),
            }
            let columns = conn.query(COLUMNS_OF, &[&table]).await?;
            let primary_key = conn.query(PRIMARY_KEY_OF, &[&table]).await?;
            Ok((columns, primary_key))
        })
        .await
        .map_err(|e| match e {
            Error::Rejected { store, message } => Error::Rejected {
                store,
                message: format!("table `{}`: {message}", schema.table()),
            },
            other => other,
        })?;
    let existing: Vec<Existing> = columns
        .iter()
        .map(|row| Existing {
            name: row.get(0),
            declared: row.get(1),
            data_type: row.get(2),
            nullable: row.get(3),
            primary: row.get(4),
            has_default: row.get(5),
        })
        .collect();
    check_table(schema, &existing)?;
    if let Some(row) = primary_key.first() {
        store
            .inner
            .primary_keys
            .writing()
            .insert(schema.table(), row.get(0));
    }
    Ok(())
}

/// Catalogue type names (`pg_type.typname`) an existing column may have
/// for a field of type `ty`: the type the store creates, or a wider one.
fn accepted(ty: ColumnType) -> &'static [&'static str] {
    match ty {
        ColumnType::Bool => &["bool"],
        ColumnType::I8 | ColumnType::I16 | ColumnType::U8 => &["int2", "int4", "int8"],
        ColumnType::I32 | ColumnType::U16 => &["int4", "int8"],
        ColumnType::I64 | ColumnType::U32 | ColumnType::U64 => &["int8"],
        ColumnType::F32 => &["float4", "float8"],
        ColumnType::F64 => &["float8"],
        ColumnType::Uuid => &["uuid", "text", "varchar"],
        ColumnType::Bytes => &["bytea"],
        ColumnType::Json => &["jsonb", "json", "text"],
        _ => &["text", "varchar"],
    }
}

/// Checks an existing table's columns against the schema.
pub(crate) fn check_table(schema: &'static Schema, found: &[Existing]) -> Result<()> {
    existing_table::check(schema, found, |i, col| {
        let is_key = i == schema.key_index();
        let ty = schema.columns()[i].ty();
        if accepted(ty).contains(&col.data_type.as_str()) {
            Ok(())
        } else {
            Err(sql::sql_type(ty, is_key).to_owned())
        }
    })
}
