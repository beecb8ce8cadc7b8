//! The [`Model`] trait that `#[derive(Model)]` implements, and the field
//! conversions it is built from.

use uuid::Uuid;

use crate::Result;
use crate::schema::{ColumnType, Schema};
use crate::value::{Key, Record, Value};

/// A struct that Octopus can persist. Implement it with `#[derive(Model)]`.
///
/// The derive generates everything at compile time: the `'static` [`Schema`],
/// key access, and conversion to and from a [`Record`] field by field (serde
/// is used only for `#[octopus(json)]` fields).
pub trait Model: Sized + Send + Sync + 'static {
    /// The model's table.
    const SCHEMA: &'static Schema;

    /// The value of the key field.
    fn key(&self) -> Key;

    /// The model as a row, in schema order. Fails only if a `json` field
    /// cannot be serialized.
    fn to_record(&self) -> Result<Record>;

    /// The model from a row in schema order; skipped fields get their
    /// `Default`.
    fn from_record(record: Record) -> Result<Self>;

    /// Gives an empty key (nil UUID, empty string) a fresh UUIDv7; returns
    /// whether it did. Integer keys are always the caller's.
    fn fill_key(&mut self) -> bool {
        false
    }

    /// Sets the key back to its empty value (undoing [`Model::fill_key`]
    /// when a create fails).
    fn clear_key(&mut self) {}

    /// The current value of the `version` field, if the model has one.
    fn version(&self) -> Option<u64> {
        None
    }

    /// Sets the `version` field, if the model has one.
    fn set_version(&mut self, _version: u64) {}

    /// The `created_at` field (unix milliseconds), if the model has one.
    fn created_at(&self) -> Option<i64> {
        None
    }

    /// Sets the `created_at` field (unix milliseconds), if the model has one.
    fn set_created_at(&mut self, _millis: i64) {}

    /// The `updated_at` field (unix milliseconds), if the model has one.
    fn updated_at(&self) -> Option<i64> {
        None
    }

    /// Sets the `updated_at` field (unix milliseconds), if the model has one.
    fn set_updated_at(&mut self, _millis: i64) {}
}

/// A Rust type that can be a column without `#[octopus(json)]`.
///
/// Implemented for `bool`, `i8`..`i64`, `u8`..`u64`, `f32`, `f64`, `String`,
/// `Vec<u8>`, `uuid::Uuid`, and `Option` of each of these.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a column type octopus can store",
    label = "unsupported column type",
    note = "supported: bool, i8..i64, u8..u64, f32, f64, String, Vec<u8>, uuid::Uuid, and Option of these",
    note = "mark the field #[octopus(json)] to store any serde type as JSON text"
)]
pub trait Field: Sized {
    /// The column's storage type.
    const TYPE: ColumnType;
    /// Whether the column is nullable (only `Option<T>`).
    const NULLABLE: bool = false;
    /// The field as a column value.
    fn encode(&self) -> Value;
    /// The field from a column value; the error says why it does not fit.
    fn decode(value: Value) -> std::result::Result<Self, String>;
}

/// Marks the non-`Option` column types, so `Option<Option<T>>` (two NULLs
/// that a store could not tell apart) is rejected at compile time.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be nested inside `Option` as an octopus column",
    note = "a store has one NULL: use a single Option, or #[octopus(json)]"
)]
pub trait NotNull {}

/// A type that can be a model's key: `String`, `uuid::Uuid` or an integer.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an octopus key",
    label = "key fields must be String, uuid::Uuid, or an integer type",
    note = "a key is never NULL, a float or JSON"
)]
pub trait KeyField: Field {
    /// The field as a [`Key`].
    fn to_key(&self) -> Key;
    /// Whether the key is empty and `create` should generate one.
    fn is_empty_key(&self) -> bool {
        false
    }
    /// A fresh key (a UUIDv7), for types that can hold one.
    fn generate() -> Option<Self> {
        None
    }
}

/// An integer type usable as an `#[octopus(version)]` field.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an octopus version",
    label = "`version` fields must be an integer type",
    note = "a version is i8..i64 or u8..u64, bumped by every update"
)]
pub trait VersionField: Field {
    /// The version as `u64` (negative versions read as 0).
    fn to_u64(&self) -> u64;
    /// The version from `u64`, saturating at the type's maximum.
    fn from_u64(v: u64) -> Self;
}

macro_rules! int_field {
    ($variant:ident, $ct:ident, $wide:ty, $($t:ty),*) => {$(
        impl Field for $t {
            const TYPE: ColumnType = ColumnType::$ct;
            fn encode(&self) -> Value {
                Value::$variant(<$wide>::from(*self))
            }
            fn decode(value: Value) -> std::result::Result<Self, String> {
                let out = match value {
                    Value::Int(i) => <$t>::try_from(i).ok(),
                    Value::UInt(u) => <$t>::try_from(u).ok(),
                    other => return Err(format!("expected an integer, found {}", other.kind())),
                };
                out.ok_or_else(|| format!("value out of range for {}", stringify!($t)))
            }
        }
        impl NotNull for $t {}
        impl KeyField for $t {
            fn to_key(&self) -> Key {
                Key::from(*self)
            }
        }
        impl VersionField for $t {
            fn to_u64(&self) -> u64 {
                u64::try_from(*self).unwrap_or(0)
            }
            fn from_u64(v: u64) -> Self {
                <$t>::try_from(v).unwrap_or(<$t>::MAX)
            }
        }
    )*};
}

int_field!(Int, I8, i64, i8);
int_field!(Int, I16, i64, i16);
int_field!(Int, I32, i64, i32);
int_field!(Int, I64, i64, i64);
int_field!(UInt, U8, u64, u8);
int_field!(UInt, U16, u64, u16);
int_field!(UInt, U32, u64, u32);
int_field!(UInt, U64, u64, u64);

impl Field for bool {
    const TYPE: ColumnType = ColumnType::Bool;
    fn encode(&self) -> Value {
        Value::Bool(*self)
    }
    fn decode(value: Value) -> std::result::Result<Self, String> {
        match value {
            Value::Bool(b) => Ok(b),
            Value::Int(0) | Value::UInt(0) => Ok(false),
            Value::Int(1) | Value::UInt(1) => Ok(true),
            other => Err(format!("expected a bool, found {other:?}")),
        }
    }
}
impl NotNull for bool {}

impl Field for f64 {
    const TYPE: ColumnType = ColumnType::F64;
    fn encode(&self) -> Value {
        Value::Float(*self)
    }
    fn decode(value: Value) -> std::result::Result<Self, String> {
        match value {
            Value::Float(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            Value::UInt(u) => Ok(u as f64),
            other => Err(format!("expected a float, found {}", other.kind())),
        }
    }
}
impl NotNull for f64 {}

impl Field for f32 {
    const TYPE: ColumnType = ColumnType::F32;
    fn encode(&self) -> Value {
        Value::Float(f64::from(*self))
    }
    fn decode(value: Value) -> std::result::Result<Self, String> {
        // The value was widened from an f32, so narrowing it back is exact.
        f64::decode(value).map(|f| f as f32)
    }
}
impl NotNull for f32 {}

impl Field for String {
    const TYPE: ColumnType = ColumnType::Text;
    fn encode(&self) -> Value {
        Value::Text(self.clone())
    }
    fn decode(value: Value) -> std::result::Result<Self, String> {
        match value {
            Value::Text(s) => Ok(s),
            other => Err(format!("expected text, found {}", other.kind())),
        }
    }
}
impl NotNull for String {}
impl KeyField for String {
    fn to_key(&self) -> Key {
        Key::Text(self.clone())
    }
    fn is_empty_key(&self) -> bool {
        self.is_empty()
    }
    fn generate() -> Option<Self> {
        Some(Uuid::now_v7().hyphenated().to_string())
    }
}

impl Field for Vec<u8> {
    const TYPE: ColumnType = ColumnType::Bytes;
    fn encode(&self) -> Value {
        Value::Bytes(self.clone())
    }
    fn decode(value: Value) -> std::result::Result<Self, String> {
        match value {
            Value::Bytes(b) => Ok(b),
            other => Err(format!("expected bytes, found {}", other.kind())),
        }
    }
}
impl NotNull for Vec<u8> {}

impl Field for Uuid {
    const TYPE: ColumnType = ColumnType::Uuid;
    fn encode(&self) -> Value {
        Value::Text(self.hyphenated().to_string())
    }
    fn decode(value: Value) -> std::result::Result<Self, String> {
        match value {
            Value::Text(s) => Uuid::parse_str(&s).map_err(|e| format!("not a UUID: {e}")),
            Value::Bytes(b) => Uuid::from_slice(&b).map_err(|e| format!("not a UUID: {e}")),
            other => Err(format!("expected a UUID, found {}", other.kind())),
        }
    }
}
impl NotNull for Uuid {}
impl KeyField for Uuid {
    fn to_key(&self) -> Key {
        Key::from(*self)
    }
    fn is_empty_key(&self) -> bool {
        self.is_nil()
    }
    fn generate() -> Option<Self> {
        Some(Uuid::now_v7())
    }
}

impl<T: Field + NotNull> Field for Option<T> {
    const TYPE: ColumnType = T::TYPE;
    const NULLABLE: bool = true;
    fn encode(&self) -> Value {
        match self {
            Some(v) => v.encode(),
            None => Value::Null,
        }
    }
    fn decode(value: Value) -> std::result::Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            v => T::decode(v).map(Some),
        }
    }
}

/// The current time as unix milliseconds, the unit of `created_at` and
/// `updated_at` fields.
pub fn now_millis() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Helpers the derive's generated code calls; not a public API.
#[doc(hidden)]
pub mod private {
    pub use crate::schema::{Column, ColumnType, Schema};
    pub use crate::value::{Key, Record, Value};
    pub use crate::{Error, Result};

    pub use super::{Field, KeyField, NotNull, VersionField};

    pub fn decoded<T>(
        schema: &'static Schema, index: usize, value: std::result::Result<T, String>,
    ) -> Result<T> {
        value.map_err(|reason| Error::Decode {
            table: schema.table(),
            column: schema.columns()[index].name(),
            reason,
        })
    }

    /// A `json` field as JSON text, refused unless it reads back as `T`:
    /// serde_json writes what it cannot read (NaN and infinities become
    /// `null`; nesting deeper than its reader's limit of 128 levels).
    pub fn encode_json<T: serde::Serialize + serde::de::DeserializeOwned>(
        schema: &'static Schema, index: usize, value: &T,
    ) -> Result<Value> {
        let refused = |why: String| Error::Invalid {
            what: format!(
                "table `{}`, column `{}`: {why}",
                schema.table(),
                schema.columns()[index].name()
            ),
        };
        let text = serde_json::to_string(value)
            .map_err(|e| refused(format!("cannot serialize as JSON: {e}")))?;
        serde_json::from_str::<T>(&text).map_err(|e| {
            refused(format!(
                "the JSON it serializes to could not be read back ({e}); \
                 NaN and infinities serialize as null, and JSON nested deeper than \
                 128 levels cannot be read"
            ))
        })?;
        Ok(Value::Text(text))
    }

    pub fn decode_json<T: serde::de::DeserializeOwned>(
        schema: &'static Schema, index: usize, value: Value,
    ) -> Result<T> {
        let fail = |reason: String| Error::Decode {
            table: schema.table(),
            column: schema.columns()[index].name(),
            reason,
        };
        match value {
            Value::Text(s) => serde_json::from_str(&s).map_err(|e| fail(e.to_string())),
            Value::Bytes(b) => serde_json::from_slice(&b).map_err(|e| fail(e.to_string())),
            other => Err(fail(format!("expected JSON text, found {}", other.kind()))),
        }
    }

    /// Splits a record into its values, checking the column count.
    pub fn values(schema: &'static Schema, record: Record) -> Result<std::vec::IntoIter<Value>> {
        schema.check_row_width(record.len())?;
        Ok(record.into_values().into_iter())
    }
}
