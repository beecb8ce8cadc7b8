//! The check of an existing table against a model's schema, shared by the
//! SQL stores: each reads its catalogue into [`Existing`] columns and says
//! which declared types fit a field; the rules are here. Every model column
//! must be present with a fitting type, the key as the primary key, NULL
//! allowed where the model may write one; no extra column may require a
//! value the model cannot give.

use octopus::{Error, Schema};

/// One column of an existing table.
pub(crate) struct Existing {
    pub name: String,
    /// The type as declared (what messages show).
    pub declared: String,
    /// The type's name alone, as the catalogue gives it.
    pub data_type: String,
    pub nullable: bool,
    pub primary: bool,
    pub has_default: bool,
}

/// Checks `found` against `schema`. `fits(i, column)`: `Ok` if the existing
/// column may hold the schema's column `i`, otherwise the type the model
/// needs.
pub(crate) fn check(
    schema: &'static Schema, found: &[Existing],
    fits: impl Fn(usize, &Existing) -> Result<(), String>,
) -> Result<(), Error> {
    let mismatch = |column: &str, reason: String| Error::SchemaMismatch {
        table: schema.table(),
        column: column.to_owned(),
        reason,
    };
    for (i, column) in schema.columns().iter().enumerate() {
        let Some(col) = found
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(column.name()))
        else {
            return Err(mismatch(
                column.name(),
                "the table has no such column".into(),
            ));
        };
        if let Err(needed) = fits(i, col) {
            return Err(mismatch(
                column.name(),
                format!(
                    "declared {}, the model needs {needed} for a {} field",
                    col.declared,
                    column.ty().name()
                ),
            ));
        }
        if i == schema.key_index() && !col.primary {
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
