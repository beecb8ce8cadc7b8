//! Decoding one journal line (see the `entry` module for its shape): the
//! checksum first, then the fields.

use serde_json::{Map, Value as Json};

use super::entry::{CRC_SUFFIX_LEN, Entry, Op, crc32};
use super::error::EntryError;
use crate::value::Key;

/// What recovery needs of an entry: where it belongs and what it does,
/// without its row (which is read back when needed).
#[derive(Debug)]
pub(crate) struct Head {
    pub seq: u64,
    pub table: String,
    pub key: Key,
    /// Whether it stores a row (else it deletes).
    pub put: bool,
    /// The first sequence number of the group commit that wrote it, if
    /// the line says (lines written before the mark existed do not).
    pub batch: Option<u64>,
    /// The entry written before its group commit, if appends that failed
    /// took the numbers between (see [`Entry::prev`]).
    pub prev: Option<u64>,
}

/// The fields of a line [`Head`] reads; the others (the row among them)
/// are skipped without being built.
#[derive(serde::Deserialize)]
struct RawHead<'a> {
    seq: u64,
    #[serde(borrow)]
    table: std::borrow::Cow<'a, str>,
    key: Json,
    #[serde(borrow)]
    op: std::borrow::Cow<'a, str>,
    #[serde(default)]
    batch: Option<u64>,
    #[serde(default)]
    prev: Option<u64>,
}

/// Parses the [`Head`] of one line (without its newline), checking the
/// checksum.
pub(crate) fn parse_head(line: &[u8]) -> Result<Head, EntryError> {
    check(line)?;
    let raw: RawHead<'_> = serde_json::from_slice(line).map_err(EntryError::NotJson)?;
    let put = match raw.op.as_ref() {
        "create" | "update" | "put" => true,
        "delete" => false,
        _ => return Err(EntryError::UnknownOp),
    };
    Ok(Head {
        seq: raw.seq,
        table: raw.table.into_owned(),
        key: key(&raw.key)?,
        put,
        batch: raw.batch,
        prev: raw.prev,
    })
}

/// Parses one line (without its newline), checking the checksum.
pub(crate) fn parse(line: &[u8]) -> Result<Entry, EntryError> {
    check(line)?;
    let json: Map<String, Json> = serde_json::from_slice(line).map_err(EntryError::NotJson)?;
    fields(json)
}

/// Checks that the line ends with the checksum of the bytes before it.
fn check(line: &[u8]) -> Result<(), EntryError> {
    if line.len() < CRC_SUFFIX_LEN + 2 {
        return Err(EntryError::TooShort);
    }
    let (object, suffix) = line.split_at(line.len() - CRC_SUFFIX_LEN);
    let hex = std::str::from_utf8(suffix)
        .ok()
        .and_then(|s| s.strip_prefix(",\"crc\":\""))
        .and_then(|s| s.strip_suffix("\"}"))
        .ok_or(EntryError::NoChecksum)?;
    let stored = u32::from_str_radix(hex, 16).map_err(|_| EntryError::ChecksumNotHex)?;
    let computed = crc32(&[object, b"}"]);
    if stored != computed {
        return Err(EntryError::ChecksumMismatch { stored, computed });
    }
    Ok(())
}

/// The entry of a line's JSON object.
fn fields(mut json: Map<String, Json>) -> Result<Entry, EntryError> {
    // The record is moved out, not copied.
    let record = json.remove("record");
    let field = |name: &'static str| json.get(name).ok_or(EntryError::Missing(name));
    let text = |name: &'static str| {
        field(name)?
            .as_str()
            .ok_or(EntryError::bad(name, "not text"))
    };
    let seq = field("seq")?
        .as_u64()
        .ok_or(EntryError::bad("seq", "not a number"))?;
    let time = field("time")?
        .as_i64()
        .ok_or(EntryError::bad("time", "not a number"))?;
    let table = text("table")?.to_owned();
    let fingerprint = u64::from_str_radix(text("fingerprint")?, 16)
        .map_err(|_| EntryError::bad("fingerprint", "not hex"))?;
    let key = key(field("key")?)?;
    let record = move || -> Result<Map<String, Json>, EntryError> {
        match record {
            Some(Json::Object(map)) => Ok(map),
            Some(_) => Err(EntryError::bad("record", "not an object")),
            None => Err(EntryError::Missing("record")),
        }
    };
    let expect = match json.get("expect") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or(EntryError::bad("expect", "not a version number"))?,
        ),
    };
    let number = |name: &'static str| match json.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or(EntryError::bad(name, "not a sequence number")),
    };
    let after = number("after")?;
    let prev = number("prev")?;
    let op = match field("op")?.as_str() {
        Some("create") => Op::Create(record()?),
        Some("update") => Op::Update {
            record: record()?,
            expect,
        },
        Some("delete") => Op::Delete { expect },
        Some("put") => Op::Put(record()?),
        _ => return Err(EntryError::UnknownOp),
    };
    Ok(Entry {
        seq,
        time,
        table,
        fingerprint,
        key,
        op,
        after,
        prev,
    })
}

/// The key of a line: text, or an integer (signed if it fits).
fn key(json: &Json) -> Result<Key, EntryError> {
    match json {
        Json::String(s) => Ok(Key::Text(s.clone())),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ok(Key::Int(i)),
            (None, Some(u)) => Ok(Key::UInt(u)),
            _ => Err(EntryError::bad("key", "not an integer")),
        },
        _ => Err(EntryError::bad("key", "neither text nor a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::line;
    use super::*;

    /// A line for `body` (what follows `{"seq":7,`) with a correct
    /// checksum, without its newline.
    fn signed(body: &str) -> Vec<u8> {
        let mut l = line(7, body);
        l.pop();
        l
    }

    /// A line of arbitrary JSON object text, given a correct checksum.
    fn object(text: &str) -> Vec<u8> {
        let open = &text.as_bytes()[..text.len() - 1];
        let crc = crc32(&[open, b"}"]);
        let mut l = open.to_vec();
        l.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}").as_bytes());
        l
    }

    const DELETE: &str =
        r#""time":1,"table":"t","op":"delete","key":"k","fingerprint":"00000000000000ff""#;

    #[test]
    fn a_good_line_decodes() {
        let e = parse(&signed(DELETE)).unwrap();
        assert_eq!(
            (e.seq, e.time, e.table.as_str(), e.fingerprint),
            (7, 1, "t", 0xff)
        );
        assert_eq!(
            (e.key, e.op),
            (Key::Text("k".into()), Op::Delete { expect: None })
        );
        let update = DELETE.replace("delete", "update") + r#","expect":3,"record":{"a":1}"#;
        let e = parse(&signed(&update)).unwrap();
        assert_eq!(e.op.precondition(), crate::change::Precondition::Version(3));
        let big = DELETE.replace("\"k\"", "18446744073709551615");
        assert_eq!(parse(&signed(&big)).unwrap().key, Key::UInt(u64::MAX));
    }

    #[test]
    fn damage_to_the_frame_is_named() {
        let good = signed(DELETE);
        assert!(matches!(parse(b"{}"), Err(EntryError::TooShort)));
        let mut no_crc = good.clone();
        no_crc.truncate(good.len() - 1);
        no_crc.push(b' ');
        assert!(matches!(parse(&no_crc), Err(EntryError::NoChecksum)));
        let mut not_text = good.clone();
        let n = not_text.len();
        not_text[n - 4] = 0xff;
        assert!(matches!(parse(&not_text), Err(EntryError::NoChecksum)));
        let mut not_hex = good.clone();
        not_hex[n - 4] = b'z';
        assert!(matches!(parse(&not_hex), Err(EntryError::ChecksumNotHex)));
        let flipped = String::from_utf8(good).unwrap().replace("\"k\"", "\"j\"");
        let want = crc32(&[&signed(DELETE)[..n - CRC_SUFFIX_LEN], b"}"]);
        match parse(flipped.as_bytes()) {
            Err(EntryError::ChecksumMismatch { stored, computed }) => {
                assert_eq!(stored, want);
                assert_ne!(computed, want);
            }
            other => panic!("expected a checksum mismatch, got {other:?}"),
        }
    }

    #[test]
    fn damage_to_the_fields_is_named() {
        // A checksum over bytes that are not JSON.
        let garbage = object("{not json at all, but long enough}");
        assert!(matches!(parse(&garbage), Err(EntryError::NotJson(_))));
        let no_seq = object(r#"{"time":1,"table":"t","op":"delete","key":"k"}"#);
        assert!(matches!(parse(&no_seq), Err(EntryError::Missing("seq"))));
        let no_record = signed(&DELETE.replace("delete", "create"));
        assert!(matches!(
            parse(&no_record),
            Err(EntryError::Missing("record"))
        ));
        let cases = [
            (DELETE.replace("\"time\":1", "\"time\":\"1\""), "time"),
            (DELETE.replace("\"t\"", "5"), "table"),
            (DELETE.replace("00000000000000ff", "xyz"), "fingerprint"),
            (DELETE.replace("\"k\"", "1.5"), "key"),
            (DELETE.replace("\"k\"", "[]"), "key"),
            (DELETE.to_owned() + r#","expect":-1"#, "expect"),
            (
                DELETE.replace("delete", "create") + r#","record":[]"#,
                "record",
            ),
        ];
        for (body, name) in cases {
            match parse(&signed(&body)) {
                Err(EntryError::BadField { field, .. }) => assert_eq!(field, name, "{body}"),
                other => panic!("expected `{name}` to be refused, got {other:?}"),
            }
        }
        let odd = signed(&DELETE.replace("delete", "merge"));
        assert!(matches!(parse(&odd), Err(EntryError::UnknownOp)));
    }
}
