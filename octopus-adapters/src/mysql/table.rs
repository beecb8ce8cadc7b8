//! The check of an existing table against the model's schema.

use octopus::{ColumnType, Error, Schema};

use super::sql::sql_type;

/// `information_schema` data types accepted for an existing column, and
/// whether it must be unsigned.
fn accepted(ty: ColumnType, is_key: bool) -> (&'static [&'static str], Option<bool>) {
    const TEXT: &[&str] = &[
        "longtext",
        "mediumtext",
        "text",
        "varchar",
        "char",
        "tinytext",
    ];
    match ty {
        ColumnType::Bool | ColumnType::I8 => (&["tinyint"], Some(false)),
        ColumnType::I16 => (&["smallint"], Some(false)),
        ColumnType::I32 => (&["int"], Some(false)),
        ColumnType::I64 => (&["bigint"], Some(false)),
        ColumnType::U8 => (&["tinyint"], Some(true)),
        ColumnType::U16 => (&["smallint"], Some(true)),
        ColumnType::U32 => (&["int"], Some(true)),
        ColumnType::U64 => (&["bigint"], Some(true)),
        ColumnType::F32 => (&["float"], None),
        ColumnType::F64 => (&["double"], None),
        ColumnType::Text | ColumnType::Uuid if is_key => (&["varchar", "char"], None),
        ColumnType::Bytes => (
            &["longblob", "mediumblob", "blob", "varbinary", "binary"],
            None,
        ),
        _ => (TEXT, None),
    }
}

/// One existing column, from `information_schema.COLUMNS`.
pub(crate) struct Existing {
    pub name: String,
    pub data_type: String,
    pub column_type: String,
    pub nullable: bool,
    pub primary: bool,
    pub has_default: bool,
}

/// Checks an existing table's columns against the schema.
pub(crate) fn check_table(schema: &'static Schema, found: &[Existing]) -> Result<(), Error> {
    let mismatch = |column: &str, reason: String| Error::SchemaMismatch {
        table: schema.table(),
        column: column.to_owned(),
        reason,
    };
    for (i, column) in schema.columns().iter().enumerate() {
        let is_key = i == schema.key_index();
        let Some(col) = found
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(column.name()))
        else {
            return Err(mismatch(
                column.name(),
                "the table has no such column".into(),
            ));
        };
        let (types, unsigned) = accepted(column.ty(), is_key);
        let is_unsigned = col.column_type.to_ascii_lowercase().contains("unsigned");
        if !types.contains(&col.data_type.to_ascii_lowercase().as_str())
            || unsigned.is_some_and(|u| u != is_unsigned)
        {
            return Err(mismatch(
                column.name(),
                format!(
                    "declared {}, the model needs {} for a {} field",
                    col.column_type,
                    sql_type(schema, i),
                    column.ty().name()
                ),
            ));
        }
        if is_key && !col.primary {
            return Err(mismatch(
                column.name(),
                "the model's key is not the table's primary key".into(),
            ));
        }
        if column.nullable() && !col.nullable {
            return Err(mismatch(
                column.name(),
                "declared NOT NULL, the model's field is an Option".into(),
            ));
        }
    }
    for col in found {
        let known = schema
            .columns()
            .iter()
            .any(|c| c.name().eq_ignore_ascii_case(&col.name));
        if !known && !col.nullable && !col.has_default {
            return Err(mismatch(
                &col.name,
                "the table requires this column (NOT NULL without default) and the model has no field for it".into(),
            ));
        }
        if !known && col.primary {
            return Err(mismatch(
                &col.name,
                "the table's primary key is not the model's key".into(),
            ));
        }
    }
    Ok(())
}
