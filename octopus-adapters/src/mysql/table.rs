//! The check of an existing table against the model's schema.

use octopus::{ColumnType, Error, Schema};

use crate::existing_table;
pub(crate) use crate::existing_table::Existing;

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

/// Checks an existing table's columns (from `information_schema.COLUMNS`)
/// against the schema.
pub(crate) fn check_table(schema: &'static Schema, found: &[Existing]) -> Result<(), Error> {
    existing_table::check(schema, found, |i, col| {
        let (types, unsigned) = accepted(schema.columns()[i].ty(), i == schema.key_index());
        let is_unsigned = col.declared.to_ascii_lowercase().contains("unsigned");
        if types.contains(&col.data_type.to_ascii_lowercase().as_str())
            && unsigned.is_none_or(|u| u == is_unsigned)
        {
            Ok(())
        } else {
            Err(sql_type(schema, i).to_owned())
        }
    })
}
