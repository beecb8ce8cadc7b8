//! Values between Octopus and PostgreSQL's binary protocol: parameters
//! encoded for the type the server inferred for each placeholder (so an
//! existing table with wider columns than the store would create works),
//! and cells decoded by the type the server sent.

use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use octopus::{ColumnType, Error, Key, Record, Schema, Value};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn StdError + Sync + Send>;

/// The longest text key, in bytes: a B-tree index entry holds at most
/// about 2700 bytes, and a longer key would fail inside the server.
pub(crate) const MAX_TEXT_KEY_BYTES: usize = 2048;

/// A value as a statement parameter.
#[derive(Debug)]
pub(crate) struct Param<'a>(pub &'a Value);

/// A key as a statement parameter.
#[derive(Debug)]
pub(crate) struct KeyParam<'a>(pub &'a Key);

/// An integer as a parameter of whichever integer type the server asks
/// for, refused if it does not fit.
fn int_to_sql(n: i128, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    let wide = |what: &str| format!("{n} does not fit a {what} column");
    match *ty {
        Type::INT2 => out.put_i16(i16::try_from(n).map_err(|_| wide("smallint"))?),
        Type::INT4 => out.put_i32(i32::try_from(n).map_err(|_| wide("integer"))?),
        // A u64 above i64::MAX is kept as its two's complement.
        Type::INT8 => out.put_i64(i64::try_from(n).unwrap_or(n as u64 as i64)),
        Type::FLOAT8 => out.put_f64(n as f64),
        ref other => return Err(format!("an integer cannot be sent as {other}").into()),
    }
    Ok(IsNull::No)
}

/// Text as a parameter of a text, uuid or json type.
fn text_to_sql(s: &str, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    match *ty {
        Type::UUID => out.put_slice(uuid::Uuid::parse_str(s)?.as_bytes()),
        // jsonb's binary form: a version byte, then the text.
        Type::JSONB => {
            out.put_u8(1);
            out.put_slice(s.as_bytes());
        }
        _ => out.put_slice(s.as_bytes()),
    }
    Ok(IsNull::No)
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(b) => b.to_sql(ty, out),
            Value::Int(i) => int_to_sql(i128::from(*i), ty, out),
            Value::UInt(u) => int_to_sql(i128::from(*u), ty, out),
            Value::Float(f) if *ty == Type::FLOAT4 => (*f as f32).to_sql(ty, out),
            Value::Float(f) => f.to_sql(ty, out),
            Value::Text(s) => text_to_sql(s, ty, out),
            Value::Bytes(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // The statements place every value where its column's type is
        // inferred; `to_sql` refuses a pairing it cannot encode.
        true
    }

    to_sql_checked!();
}

impl ToSql for KeyParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            Key::Int(i) => int_to_sql(i128::from(*i), ty, out),
            Key::UInt(u) => int_to_sql(i128::from(*u), ty, out),
            Key::Text(s) => text_to_sql(s, ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One cell of a result row, undecoded: its type and its bytes (`None`:
/// NULL).
pub(crate) struct Cell<'a> {
    ty: Type,
    raw: Option<&'a [u8]>,
}

impl<'a> FromSql<'a> for Cell<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Cell {
            ty: ty.clone(),
            raw: Some(raw),
        })
    }

    fn from_sql_null(ty: &Type) -> Result<Self, BoxError> {
        Ok(Cell {
            ty: ty.clone(),
            raw: None,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Turns a result row into a record in schema order.
pub(crate) fn read_row(
    schema: &'static Schema, row: &tokio_postgres::Row,
) -> Result<Record, Error> {
    schema.check_row_width(row.len())?;
    let mut out = Vec::with_capacity(row.len());
    for index in 0..row.len() {
        out.push(read_value(schema, index, row, index)?);
    }
    Ok(Record::new(out))
}

/// The value of `row`'s cell `cell`, as schema column `index`.
pub(crate) fn read_value(
    schema: &'static Schema, index: usize, row: &tokio_postgres::Row, cell: usize,
) -> Result<Value, Error> {
    let column = &schema.columns()[index];
    let fail = |reason: String| Error::decode(schema.table(), column.name(), reason);
    let cell: Cell<'_> = row.try_get(cell).map_err(|e| fail(e.to_string()))?;
    let Some(raw) = cell.raw else {
        return Ok(Value::Null);
    };
    decode(column.ty(), &cell.ty, raw).map_err(|e| fail(e.to_string()))
}

/// Decodes `raw`, sent as `sent`, into a value of column type `ty`.
fn decode(ty: ColumnType, sent: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    let int = |n: i64| -> Result<Value, BoxError> {
        Ok(match ty {
            ColumnType::U64 => Value::UInt(n as u64),
            t if t.is_unsigned_int() => Value::UInt(u64::try_from(n)?),
            ColumnType::F32 | ColumnType::F64 => Value::Float(n as f64),
            _ => Value::Int(n),
        })
    };
    Ok(match *sent {
        Type::BOOL => Value::Bool(bool::from_sql(sent, raw)?),
        Type::INT2 => int(i64::from(i16::from_sql(sent, raw)?))?,
        Type::INT4 => int(i64::from(i32::from_sql(sent, raw)?))?,
        Type::INT8 => int(i64::from_sql(sent, raw)?)?,
        Type::FLOAT4 => Value::Float(f64::from(f32::from_sql(sent, raw)?)),
        Type::FLOAT8 => Value::Float(f64::from_sql(sent, raw)?),
        Type::BYTEA => Value::Bytes(raw.to_vec()),
        Type::UUID => Value::Text(uuid::Uuid::from_slice(raw)?.hyphenated().to_string()),
        Type::JSONB => match raw.split_first() {
            Some((1, text)) => Value::Text(std::str::from_utf8(text)?.to_owned()),
            _ => return Err("unknown jsonb format version".into()),
        },
        _ => Value::Text(String::from_sql(sent, raw)?),
    })
}

/// Refuses what PostgreSQL cannot hold, before anything is sent: a NUL
/// character in text, a uuid field that is not a UUID, a text key longer
/// than an index entry may be.
pub(crate) fn check_storable(schema: &'static Schema, record: &Record) -> Result<(), Error> {
    for (column, value) in schema.columns().iter().zip(record.values()) {
        let Value::Text(s) = value else { continue };
        let refuse = |why: &str| {
            Err(Error::invalid(format!(
                "table `{}`, column `{}`: {why}",
                schema.table(),
                column.name()
            )))
        };
        if s.contains('\0') {
            return refuse("PostgreSQL text cannot hold a NUL character");
        }
        if column.ty() == ColumnType::Uuid && uuid::Uuid::parse_str(s).is_err() {
            return refuse(&format!("{s:?} is not a UUID"));
        }
    }
    if let Some(Value::Text(k)) = record.get(schema.key_index()) {
        check_text_key(schema, k)?;
    }
    Ok(())
}

/// Refuses a text key PostgreSQL cannot index or hold.
pub(crate) fn check_text_key(schema: &'static Schema, key: &str) -> Result<(), Error> {
    let refuse = |why: String| {
        Err(Error::invalid(format!(
            "table `{}`, key column `{}`: {why}",
            schema.table(),
            schema.key_column().name()
        )))
    };
    if key.len() > MAX_TEXT_KEY_BYTES {
        return refuse(format!(
            "a key of {} bytes is longer than the {MAX_TEXT_KEY_BYTES} a PostgreSQL index entry holds here",
            key.len()
        ));
    }
    if key.contains('\0') {
        return refuse("PostgreSQL text cannot hold a NUL character".into());
    }
    if schema.key_column().ty() == ColumnType::Uuid && uuid::Uuid::parse_str(key).is_err() {
        return refuse(format!("{key:?} is not a UUID"));
    }
    Ok(())
}

/// The version in cell 0 of `row` (0 for NULL or a value that cannot be a
/// version).
pub(crate) fn version_number(row: &tokio_postgres::Row) -> u64 {
    let Ok(Cell { ty, raw: Some(raw) }) = row.try_get::<_, Cell<'_>>(0) else {
        return 0;
    };
    match decode(ColumnType::U64, &ty, raw) {
        Ok(Value::UInt(u)) => u,
        _ => 0,
    }
}

/// `stored` with each json column's text replaced by `row`'s where both
/// hold the same JSON: a `jsonb` column gives back its own normal form
/// (keys sorted, spaces added), which is the same value.
pub(crate) fn same_json_as(schema: &'static Schema, stored: Record, row: &Record) -> Record {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    let mut values = stored.into_values();
    for (i, column) in schema.columns().iter().enumerate() {
        if column.ty() != ColumnType::Json {
            continue;
        }
        if let (Some(Value::Text(have)), Some(Value::Text(want))) = (values.get(i), row.get(i))
            && have != want
            && parse(have).is_some_and(|h| Some(h) == parse(want))
        {
            values[i] = Value::Text(want.clone());
        }
    }
    Record::new(values)
}
