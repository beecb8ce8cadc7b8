//! One journal line: the JSON encoding of an entry, its checksum, and the
//! conversion of records to and from JSON objects keyed by column name.
//!
//! A line is a JSON object, written as
//!
//! ```text
//! {"seq":7,"time":1795297488052,"table":"books","op":"update","expect":3,"key":"b-1","fingerprint":"4c66ee2b4da6ce3f","record":{...},"crc":"1a2b3c4d"}
//! ```
//!
//! Lines the writer writes also carry, after `seq`, `batch`: the first
//! sequence number of the group commit that wrote them; and, in the group
//! commit after appends that failed, `prev`: the entry written before it
//! (the numbers between went to the failed appends and are never reused).
//!
//! `after`, when present, is the sequence number of the pending entry of the
//! same key the write was checked against. `op` is `create` (the key must be absent), `update` (the row must exist;
//! with `expect`, at that version) or `delete` (with `expect`, only at that
//! version): the operation and the precondition the write was acknowledged
//! under, so replay applies it with the primary's own semantics. Journals of
//! the first format hold `put` (replayed as an unconditional upsert) and
//! `delete` without `expect`; they still open and replay.
//!
//! where `crc` is the CRC-32 (IEEE) of the line's bytes up to the `,"crc"`
//! that precedes it, with a closing `}` appended: the object as it would be
//! without its checksum. Values: integers as JSON numbers (the whole `u64`
//! range is kept), non-finite floats as the strings `"NaN"`, `"Infinity"`,
//! `"-Infinity"`, bytes as lowercase hex, `json` fields as their JSON text.

use serde_json::{Map, Value as Json};

/// Decoding a line, with its typed errors, lives in `decode`.
pub(crate) use super::decode::parse;

use crate::change::Precondition;
use crate::schema::{ColumnType, Schema};
use crate::value::{Key, Record, Value};

/// What an entry does, with the precondition it was acknowledged under.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert a new row (the key must be absent).
    Create(Map<String, Json>),
    /// Replace an existing row; with `expect`, only if its version is that.
    Update {
        /// The new row.
        record: Map<String, Json>,
        /// The version the stored row must have.
        expect: Option<u64>,
    },
    /// Delete the row; with `expect`, only if its version is that.
    Delete {
        /// The version the stored row must have.
        expect: Option<u64>,
    },
    /// Insert or replace the row, unconditionally: entries of the journal's
    /// first format, which kept no operation.
    Put(Map<String, Json>),
}

impl Op {
    /// What the stored row must be for the entry to apply.
    pub fn precondition(&self) -> Precondition {
        match self {
            Op::Create(_) => Precondition::Absent,
            Op::Update {
                expect: Some(v), ..
            }
            | Op::Delete { expect: Some(v) } => Precondition::Version(*v),
            Op::Update { expect: None, .. } => Precondition::Exists,
            Op::Delete { expect: None } | Op::Put(_) => Precondition::Always,
        }
    }

    /// The operation's name in a journal line: `create`, `update`,
    /// `delete` or `put`.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Create(_) => "create",
            Op::Update { .. } => "update",
            Op::Delete { .. } => "delete",
            Op::Put(_) => "put",
        }
    }

    /// The row the entry stores, if it stores one.
    pub fn record(&self) -> Option<&Map<String, Json>> {
        match self {
            Op::Create(r) | Op::Put(r) | Op::Update { record: r, .. } => Some(r),
            Op::Delete { .. } => None,
        }
    }
}

/// A write as the journal encodes it, before it has a sequence number.
#[derive(Debug, Clone, Copy)]
pub enum Intent<'a> {
    /// A create of this row.
    Create(&'a Record),
    /// An update to this row, at an expected version if known.
    Update(&'a Record, Option<u64>),
    /// A delete, at an expected version if known.
    Delete(Option<u64>),
}

impl Intent<'_> {
    /// The row written, if any.
    pub fn record(&self) -> Option<&Record> {
        match self {
            Intent::Create(r) | Intent::Update(r, _) => Some(r),
            Intent::Delete(_) => None,
        }
    }
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Position in the journal, from 1, without gaps but those appends
    /// that failed left (see [`Entry::prev`]).
    pub seq: u64,
    /// When it was written, unix milliseconds.
    pub time: i64,
    /// The model's table.
    pub table: String,
    /// The model's schema fingerprint when it was written.
    pub fingerprint: u64,
    /// The row's key.
    pub key: Key,
    /// The operation and its precondition.
    pub op: Op,
    /// The pending entry of the same key this one was checked against when
    /// it was written, if there was one: if that entry is refused at
    /// replay, so is this one (it was built on a state that never was).
    pub after: Option<u64>,
    /// The entry written before this one's group commit, when that is not
    /// the one numbered just before it: the numbers between were given to
    /// appends that failed (never acknowledged, never written), and are not
    /// used again.
    pub prev: Option<u64>,
}

/// The length of the `,"crc":"xxxxxxxx"}` that ends every line.
pub(super) const CRC_SUFFIX_LEN: usize = r#","crc":"00000000"}"#.len();

/// CRC-32 (IEEE 802.3), as zlib computes it.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for part in parts {
        h.update(part);
    }
    h.finalize()
}

/// The JSON form of a key (number or string).
pub fn key_json(key: &Key) -> Json {
    match key {
        Key::Int(i) => Json::from(*i),
        Key::UInt(u) => Json::from(*u),
        Key::Text(s) => Json::from(s.as_str()),
    }
}

/// The key of an entry as the schema's key column types it.
pub fn key_from_json(schema: &'static Schema, json: &Json) -> Result<Key, String> {
    let ty = schema.key_column().ty();
    match json {
        Json::String(s) if matches!(ty, ColumnType::Text | ColumnType::Uuid) => {
            Ok(Key::Text(s.clone()))
        }
        Json::Number(n) if ty.is_unsigned_int() => n
            .as_u64()
            .map(Key::UInt)
            .ok_or_else(|| format!("key {n} is not unsigned")),
        Json::Number(n) if ty.is_signed_int() => n
            .as_i64()
            .map(Key::Int)
            .ok_or_else(|| format!("key {n} is not a signed integer")),
        other => Err(format!(
            "key {other} does not fit key column `{}` ({})",
            schema.key_column().name(),
            ty.name()
        )),
    }
}

/// Appends `text` as a JSON string.
fn push_str(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn push_display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = write!(out, "{v}");
}

/// Appends a value in the journal's JSON form (see the module docs).
fn push_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => push_display(out, i),
        Value::UInt(u) => push_display(out, u),
        Value::Float(f) if f.is_nan() => out.extend_from_slice(b"\"NaN\""),
        Value::Float(f) if f.is_infinite() => out.extend_from_slice(if *f > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        }),
        Value::Float(f) => {
            let _ = serde_json::to_writer(&mut *out, f);
        }
        Value::Text(s) => push_str(out, s),
        Value::Bytes(b) => {
            out.push(b'"');
            for byte in b {
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            out.push(b'"');
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The part of a line after `{"seq":N,` and before the checksum: everything
/// the caller can encode before a sequence number is assigned. Written
/// directly (no intermediate JSON tree): appends are the journal's hot path.
pub fn body(
    schema: &'static Schema, time: i64, key: &Key, intent: Intent<'_>, after: Option<u64>,
) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(160);
    out.extend_from_slice(b"\"time\":");
    push_display(&mut out, time);
    out.extend_from_slice(b",\"table\":");
    push_str(&mut out, schema.table());
    let (op, expect): (&[u8], Option<u64>) = match intent {
        Intent::Create(_) => (b",\"op\":\"create\"", None),
        Intent::Update(_, expect) => (b",\"op\":\"update\"", expect),
        Intent::Delete(expect) => (b",\"op\":\"delete\"", expect),
    };
    out.extend_from_slice(op);
    if let Some(v) = expect {
        out.extend_from_slice(b",\"expect\":");
        push_display(&mut out, v);
    }
    if let Some(seq) = after {
        out.extend_from_slice(b",\"after\":");
        push_display(&mut out, seq);
    }
    out.extend_from_slice(b",\"key\":");
    push_value(&mut out, &key.to_value());
    out.extend_from_slice(b",\"fingerprint\":\"");
    push_display(&mut out, format_args!("{:016x}", schema.fingerprint()));
    out.push(b'"');
    if let Some(record) = intent.record() {
        out.extend_from_slice(b",\"record\":{");
        for (i, (c, v)) in schema.columns().iter().zip(record.values()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(&mut out, c.name());
            out.push(b':');
            push_value(&mut out, v);
        }
        out.push(b'}');
    }
    // Only valid UTF-8 went in: JSON text from serde_json, ASCII, and
    // `str`s; the fallback keeps this total.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The body of an entry decoded earlier (a requeued dead letter): the same
/// operation, precondition, key and row, at a new time.
pub fn body_of(e: &Entry) -> String {
    let mut m = entry_json(e);
    m.remove("seq");
    // A new entry: checked against nothing pending.
    m.remove("after");
    m.insert("time".into(), Json::from(crate::model::now_millis()));
    let text = Json::Object(m).to_string();
    // `{...}` without its braces: what follows `{"seq":N,`.
    text[1..text.len() - 1].to_owned()
}

/// The full line (with newline) for `body` at `seq`, without a group
/// commit mark (as journals before it were written).
#[cfg(test)]
pub fn line(seq: u64, body: &str) -> Vec<u8> {
    framed(format!("{{\"seq\":{seq},"), body)
}

/// The full line (with newline) for `body` at `seq`, written by the group
/// commit whose first entry is `batch`: recovery tells an append a power
/// loss interrupted (damage, then only lines of the same group commit) from
/// damage to synced entries (lines of a later group commit follow). `prev`:
/// the entry written before the group commit, when appends that failed
/// took the numbers between (see [`Entry::prev`]).
pub fn line_in_batch(seq: u64, batch: u64, prev: Option<u64>, body: &str) -> Vec<u8> {
    match prev {
        Some(prev) => framed(
            format!("{{\"seq\":{seq},\"batch\":{batch},\"prev\":{prev},"),
            body,
        ),
        None => framed(format!("{{\"seq\":{seq},\"batch\":{batch},"), body),
    }
}

fn framed(head: String, body: &str) -> Vec<u8> {
    let crc = crc32(&[head.as_bytes(), body.as_bytes(), b"}"]);
    let mut out = Vec::with_capacity(head.len() + body.len() + CRC_SUFFIX_LEN + 1);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
    out
}

impl Entry {
    /// The entry as one JSON object, in the shape of its journal line
    /// without the checksum (what dead letters and exports hold).
    pub fn to_json(&self) -> Json {
        Json::Object(entry_json(self))
    }
}

/// An entry as a JSON object, in the shape of its journal line without the
/// checksum (what dead letters and exports hold).
pub fn entry_json(e: &Entry) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("seq".into(), Json::from(e.seq));
    m.insert("time".into(), Json::from(e.time));
    m.insert("table".into(), Json::from(e.table.as_str()));
    let expect = match &e.op {
        Op::Update { expect, .. } | Op::Delete { expect } => *expect,
        Op::Create(_) | Op::Put(_) => None,
    };
    m.insert("op".into(), Json::from(e.op.name()));
    if let Some(v) = expect {
        m.insert("expect".into(), Json::from(v));
    }
    if let Some(seq) = e.after {
        m.insert("after".into(), Json::from(seq));
    }
    m.insert("key".into(), key_json(&e.key));
    m.insert(
        "fingerprint".into(),
        Json::from(format!("{:016x}", e.fingerprint)),
    );
    if let Some(r) = e.op.record() {
        m.insert("record".into(), Json::Object(r.clone()));
    }
    m
}

/// The entry of [`entry_json`]'s object (its `seq` and `time` included).
pub fn entry_from_json(m: &Map<String, Json>) -> Result<Entry, String> {
    let mut line = serde_json::to_vec(m).map_err(|e| e.to_string())?;
    // Reuse the one parser: give the object a checksum.
    line.pop();
    let crc = crc32(&[&line, b"}"]);
    line.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}").as_bytes());
    parse(&line).map_err(|e| e.to_string())
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A record of `schema` from a JSON object keyed by column name: columns are
/// matched by name, so an entry written under an older shape of the model
/// applies if every column the model needs is there (a missing nullable
/// column is NULL). Otherwise the error names the column.
pub fn record_from_json(
    schema: &'static Schema, object: &Map<String, Json>,
) -> Result<Record, (String, String)> {
    let mut values = Vec::with_capacity(schema.columns().len());
    for c in schema.columns() {
        let fail = |why: String| (c.name().to_owned(), why);
        let Some(j) = object.get(c.name()) else {
            if c.nullable() {
                values.push(Value::Null);
                continue;
            }
            return Err(fail(
                "the entry has no value for this non-nullable column".into(),
            ));
        };
        let v = match (c.ty(), j) {
            (_, Json::Null) if c.nullable() => Value::Null,
            (_, Json::Null) => return Err(fail("NULL in a non-nullable column".into())),
            (ColumnType::Bool, Json::Bool(b)) => Value::Bool(*b),
            (t, Json::Number(n)) if t.is_signed_int() => Value::Int(
                n.as_i64()
                    .ok_or_else(|| fail(format!("{n} is not a signed integer")))?,
            ),
            (t, Json::Number(n)) if t.is_unsigned_int() => Value::UInt(
                n.as_u64()
                    .ok_or_else(|| fail(format!("{n} is not an unsigned integer")))?,
            ),
            (ColumnType::F32 | ColumnType::F64, Json::Number(n)) => Value::Float(
                n.as_f64()
                    .ok_or_else(|| fail(format!("{n} is not a float")))?,
            ),
            (ColumnType::F32 | ColumnType::F64, Json::String(s)) => {
                Value::Float(match s.as_str() {
                    "NaN" => f64::NAN,
                    "Infinity" => f64::INFINITY,
                    "-Infinity" => f64::NEG_INFINITY,
                    _ => return Err(fail(format!("{s:?} is not a float"))),
                })
            }
            (ColumnType::Text | ColumnType::Uuid | ColumnType::Json, Json::String(s)) => {
                Value::Text(s.clone())
            }
            (ColumnType::Bytes, Json::String(s)) => {
                Value::Bytes(unhex(s).ok_or_else(|| fail("bytes are not hex".into()))?)
            }
            (t, other) => return Err(fail(format!("{other} does not fit a {} column", t.name()))),
        };
        values.push(v);
    }
    Ok(Record::new(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_zlib() {
        // zlib.crc32(b"123456789") == 0xcbf43926
        assert_eq!(crc32(&[b"123456789"]), 0xcbf4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xcbf4_3926);
    }
}
