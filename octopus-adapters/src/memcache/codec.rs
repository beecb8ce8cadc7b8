//! Cache keys and the compact binary encoding of records.
//!
//! Key: `octopus:<table>:<key>`, one key per row whatever the model's
//! shape, so during a rolling deploy servers of either version invalidate
//! the rows the other cached. The value carries the schema fingerprint: a
//! value written under another shape is a miss (never decoded) that a fill
//! may replace. The key part is `i<n>` or `u<n>` for integers and `s<text>`
//! for text that memcached can hold as is (printable ASCII without spaces,
//! the whole key within 250 bytes); any other text is `h` and a 128-bit hash
//! in hex. A hash could in theory collide, so every value also carries the
//! exact key it was written for, and a value whose key differs is a miss:
//! two keys never read each other's row.
//!
//! Value (all integers little-endian, lengths and unsigned numbers as LEB128
//! varints, signed numbers zigzag-encoded):
//!
//! ```text
//! u8 format (1) | u64 fingerprint | varint len, key bytes | varint columns |
//! per column: u8 tag | payload
//!   0 NULL | 1 false | 2 true | 3 int (zigzag varint) | 4 uint (varint)
//!   5 float (8 bytes, IEEE-754 bits) | 6 text (varint len, UTF-8) | 7 bytes (varint len)
//! ```

use octopus::{Key, Record, Schema, Value};

const FORMAT: u8 = 1;
const MAX_KEY: usize = 250;

/// The exact key, as written into values for verification.
fn canonical(key: &Key) -> Vec<u8> {
    match key {
        Key::Int(i) => format!("i{i}").into_bytes(),
        Key::UInt(u) => format!("u{u}").into_bytes(),
        Key::Text(s) => {
            let mut v = Vec::with_capacity(s.len() + 1);
            v.push(b's');
            v.extend_from_slice(s.as_bytes());
            v
        }
    }
}

/// FNV-1a 64 from a given start; stable everywhere.
pub(crate) fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// SplitMix64's finalizer: spreads FNV's weak low bits.
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash128(bytes: &[u8]) -> (u64, u64) {
    let a = mix(fnv1a(0xcbf2_9ce4_8422_2325, bytes));
    let b = mix(fnv1a(0x6c62_272e_07bb_0142, bytes) ^ bytes.len() as u64);
    (a, b)
}

/// The memcached key of `key` in `schema`'s table, under `namespace`
/// (`octopus` unless configured).
pub(crate) fn cache_key(namespace: &str, schema: &'static Schema, key: &Key) -> String {
    let prefix = format!("{namespace}:{}:", schema.table());
    match key {
        Key::Int(i) => format!("{prefix}i{i}"),
        Key::UInt(u) => format!("{prefix}u{u}"),
        Key::Text(s) => {
            let plain = s.bytes().all(|b| (0x21..=0x7e).contains(&b));
            if plain && prefix.len() + 1 + s.len() <= MAX_KEY {
                format!("{prefix}s{s}")
            } else {
                let (a, b) = hash128(s.as_bytes());
                format!("{prefix}h{a:016x}{b:016x}")
            }
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes `record` (whose key is `key`) for `schema`.
pub(crate) fn encode(schema: &'static Schema, key: &Key, record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT);
    out.extend_from_slice(&schema.fingerprint().to_le_bytes());
    put_bytes(&mut out, &canonical(key));
    put_varint(&mut out, record.len() as u64);
    for v in record.values() {
        match v {
            Value::Null => out.push(0),
            Value::Bool(false) => out.push(1),
            Value::Bool(true) => out.push(2),
            Value::Int(i) => {
                out.push(3);
                put_varint(&mut out, ((i << 1) ^ (i >> 63)) as u64);
            }
            Value::UInt(u) => {
                out.push(4);
                put_varint(&mut out, *u);
            }
            Value::Float(f) => {
                out.push(5);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Text(s) => {
                out.push(6);
                put_bytes(&mut out, s.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(7);
                put_bytes(&mut out, b);
            }
        }
    }
    out
}

/// Why bytes did not decode as a row of this schema and key.
#[derive(Debug, PartialEq)]
pub(crate) enum Mismatch {
    /// Written under another model shape or for another key: a miss.
    Stale,
    /// Malformed bytes.
    Corrupt(&'static str),
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Mismatch> {
        if self.bytes.len() < n {
            return Err(Mismatch::Corrupt("truncated value"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, Mismatch> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, Mismatch> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Mismatch::Corrupt("varint too long"))
    }

    fn sized(&mut self) -> Result<&'a [u8], Mismatch> {
        let n =
            usize::try_from(self.varint()?).map_err(|_| Mismatch::Corrupt("length too large"))?;
        self.take(n)
    }
}

/// Decodes bytes written by [`encode`] for `schema` and `key`.
pub(crate) fn decode(schema: &'static Schema, key: &Key, bytes: &[u8]) -> Result<Record, Mismatch> {
    let mut r = Reader { bytes };
    if r.byte()? != FORMAT {
        return Err(Mismatch::Stale);
    }
    let fp = u64::from_le_bytes(
        r.take(8)?
            .try_into()
            .map_err(|_| Mismatch::Corrupt("fingerprint"))?,
    );
    if fp != schema.fingerprint() {
        return Err(Mismatch::Stale);
    }
    if r.sized()? != canonical(key).as_slice() {
        return Err(Mismatch::Stale);
    }
    let n = r.varint()?;
    if n != schema.columns().len() as u64 {
        return Err(Mismatch::Stale);
    }
    let mut values = Vec::with_capacity(schema.columns().len());
    for _ in 0..n {
        let v = match r.byte()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => {
                let z = r.varint()?;
                Value::Int(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            4 => Value::UInt(r.varint()?),
            5 => Value::Float(f64::from_bits(u64::from_le_bytes(
                r.take(8)?
                    .try_into()
                    .map_err(|_| Mismatch::Corrupt("float"))?,
            ))),
            6 => Value::Text(
                String::from_utf8(r.sized()?.to_vec())
                    .map_err(|_| Mismatch::Corrupt("text is not UTF-8"))?,
            ),
            7 => Value::Bytes(r.sized()?.to_vec()),
            _ => return Err(Mismatch::Corrupt("unknown value tag")),
        };
        values.push(v);
    }
    if !r.bytes.is_empty() {
        return Err(Mismatch::Corrupt("trailing bytes"));
    }
    Ok(Record::new(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use octopus::{Column, ColumnType};

    const COLS: &[Column] = &[
        Column::new("id", ColumnType::Text, false),
        Column::new("n", ColumnType::I64, true),
        Column::new("f", ColumnType::F64, false),
        Column::new("b", ColumnType::Bytes, false),
        Column::new("u", ColumnType::U64, false),
        Column::new("t", ColumnType::Bool, false),
    ];
    static SCHEMA: Schema = Schema::new("things", COLS, 0, None, None, None);

    fn record(id: &str, n: Option<i64>) -> Record {
        Record::new(vec![
            Value::Text(id.into()),
            n.map_or(Value::Null, Value::Int),
            Value::Float(f64::NAN),
            Value::Bytes(vec![0, 255, 7]),
            Value::UInt(u64::MAX),
            Value::Bool(true),
        ])
    }

    #[test]
    fn values_round_trip() {
        for n in [None, Some(i64::MIN), Some(-1), Some(0), Some(i64::MAX)] {
            let key = Key::from("k");
            let r = record("k", n);
            let back = decode(&SCHEMA, &key, &encode(&SCHEMA, &key, &r)).unwrap();
            assert_eq!(back.values()[1], r.values()[1]);
            assert!(matches!(back.values()[2], Value::Float(f) if f.is_nan()));
            assert_eq!(back.values()[3..], r.values()[3..]);
        }
    }

    #[test]
    fn another_key_or_shape_is_a_miss() {
        let bytes = encode(&SCHEMA, &Key::from("a"), &record("a", None));
        assert_eq!(
            decode(&SCHEMA, &Key::from("b"), &bytes),
            Err(Mismatch::Stale)
        );
        const FEWER: &[Column] = &[
            Column::new("id", ColumnType::Text, false),
            Column::new("n", ColumnType::I64, true),
        ];
        static OTHER: Schema = Schema::new("things", FEWER, 0, None, None, None);
        assert_eq!(
            decode(&OTHER, &Key::from("a"), &bytes),
            Err(Mismatch::Stale)
        );
        assert!(matches!(
            decode(&SCHEMA, &Key::from("a"), &bytes[..bytes.len() - 1]),
            Err(Mismatch::Corrupt(_))
        ));
    }

    #[test]
    fn keys_memcached_cannot_hold_are_hashed_deterministically() {
        let fp = "";
        // No fingerprint: one key per row whatever the shape.
        assert_eq!(
            cache_key("octopus", &SCHEMA, &Key::from("plain-key")),
            format!("octopus:things:{fp}splain-key")
        );
        assert_eq!(
            cache_key("octopus", &SCHEMA, &Key::Int(-5)),
            format!("octopus:things:{fp}i-5")
        );
        let spaced = cache_key("octopus", &SCHEMA, &Key::from("with space"));
        assert!(spaced.starts_with(&format!("octopus:things:{fp}h")) && !spaced.contains(' '));
        // Pinned: the same text maps to the same key on every build.
        assert_eq!(
            spaced,
            cache_key("octopus", &SCHEMA, &Key::from("with space"))
        );
        let (a, b) = hash128(b"with space");
        assert_eq!(spaced, format!("octopus:things:{fp}h{a:016x}{b:016x}"));
        let long = cache_key("octopus", &SCHEMA, &Key::from("x".repeat(400).as_str()));
        assert!(long.len() <= 250);
        assert_ne!(
            long,
            cache_key("octopus", &SCHEMA, &Key::from("x".repeat(401).as_str()))
        );
        assert_ne!(
            cache_key("octopus", &SCHEMA, &Key::from("ü")),
            cache_key("octopus", &SCHEMA, &Key::from("u"))
        );
    }
}
