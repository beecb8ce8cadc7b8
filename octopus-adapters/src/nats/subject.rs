//! Subjects: one per row, `<prefix>.rows.<table>.<key>`, whatever the key's
//! text (NATS subjects allow no `.`, `*`, `>` or white space in a token).

use octopus::Key;

/// The subject of `key`'s row in `table`. A key is one token: `n42` for a
/// non-negative integer (signed or not: `5` is one key, as everywhere in
/// Octopus), `m7` for -7, `t` and the hex of its UTF-8 for text.
pub(super) fn row(prefix: &str, table: &str, key: &Key) -> String {
    format!("{prefix}.rows.{table}.{}", token(key))
}

/// Every row subject of a stream: what its stream and its drainer read.
pub(super) fn rows(prefix: &str) -> String {
    format!("{prefix}.rows.>")
}

/// Where dead letters of `table` go.
pub(super) fn dead(prefix: &str, table: &str) -> String {
    format!("{prefix}.dead.{table}")
}

fn token(key: &Key) -> String {
    match key {
        Key::UInt(n) => format!("n{n}"),
        Key::Int(n) if *n >= 0 => format!("n{n}"),
        Key::Int(n) => format!("m{}", n.unsigned_abs()),
        Key::Text(t) => {
            let mut out = String::with_capacity(1 + 2 * t.len());
            out.push('t');
            for b in t.as_bytes() {
                out.push_str(&format!("{b:02x}"));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_key_is_one_safe_token() {
        let keys = [
            Key::UInt(5),
            Key::Int(5),
            Key::Int(-5),
            Key::Text("a.b *>\t x".into()),
            Key::Text(String::new()),
        ];
        let subjects: Vec<String> = keys.iter().map(|k| row("o.s", "t", k)).collect();
        assert_eq!(subjects[0], subjects[1], "5 and 5u are one key");
        assert_ne!(subjects[1], subjects[2]);
        for s in &subjects {
            let token = s.strip_prefix("o.s.rows.t.").unwrap();
            assert!(!token.is_empty(), "{s}");
            assert!(token.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
        }
        assert_ne!(subjects[3], subjects[4]);
    }
}
