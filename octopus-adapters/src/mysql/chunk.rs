//! How many rows (or keys) go into one statement: at most [`MAX_ROWS`],
//! at most MySQL's 65535 placeholders, and an estimated encoded size that
//! fits the server's `max_allowed_packet`.

use std::ops::Range;
use std::sync::atomic::Ordering;

use mysql_async::Params;
use mysql_async::prelude::Queryable;
use octopus::{Key, Result, Value};

use super::MysqlStore;
use super::call::Access;

/// Most rows or keys per statement: beyond this a bigger statement saves
/// nothing measurable and costs a larger prepared statement per connection.
pub(crate) const MAX_ROWS: usize = 1000;

/// MySQL's limit on placeholders in one prepared statement.
const MAX_PLACEHOLDERS: usize = 65_535;

/// Bytes of a statement's packet kept free for its header, the null bitmap's
/// rounding and the statement id.
const HEADROOM: usize = 4096;

/// Largest payload mysql_async sends as one `COM_STMT_EXECUTE` packet; above
/// it every parameter is sent on its own (`COM_STMT_SEND_LONG_DATA`).
const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// The most bytes of parameters one statement may carry, for a server whose
/// `max_allowed_packet` is `max_packet`.
pub(crate) fn budget(max_packet: usize) -> usize {
    max_packet.min(MAX_PAYLOAD).saturating_sub(HEADROOM).max(1)
}

/// An upper bound of `value`'s size as a binary-protocol parameter: its
/// type (2 bytes), a null-bitmap bit (counted as a byte), and the value
/// (8 bytes for numbers; a length prefix of up to 9 bytes and the bytes for
/// text and blobs).
pub(crate) fn value_len(value: &Value) -> usize {
    3 + match value {
        Value::Null => 0,
        Value::Bool(_) | Value::Int(_) | Value::UInt(_) | Value::Float(_) => 8,
        Value::Text(s) => 9 + s.len(),
        Value::Bytes(b) => 9 + b.len(),
    }
}

/// [`value_len`] of a whole row.
pub(crate) fn row_len(values: &[Value]) -> usize {
    values.iter().map(value_len).sum()
}

/// [`value_len`] of a key.
pub(crate) fn key_len(key: &Key) -> usize {
    3 + match key {
        Key::Int(_) | Key::UInt(_) => 8,
        Key::Text(s) => 9 + s.len(),
    }
}

/// Splits items of the given encoded `sizes`, `placeholders` each, into
/// consecutive runs that each fit one statement of `budget` bytes. An item
/// larger than the budget on its own gets a run of its own (callers refuse
/// such items before they get here).
pub(crate) fn runs(sizes: &[usize], placeholders: usize, budget: usize) -> Vec<Range<usize>> {
    let per_statement = MAX_ROWS.min(MAX_PLACEHOLDERS / placeholders.max(1)).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let full = i - start == per_statement || (i > start && bytes + size > budget);
        if full {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

impl MysqlStore {
    /// The server's `max_allowed_packet`, read once and kept.
    pub(super) async fn max_packet(&self) -> Result<usize> {
        let known = self.inner.max_packet.load(Ordering::Relaxed);
        if known > 0 {
            return Ok(known);
        }
        let read: Option<u64> = self
            .call(Access::Read, |mut conn| async move {
                conn.query_first("SELECT @@max_allowed_packet").await
            })
            .await?;
        // MySQL's default, should the server not say.
        let bytes = read.map_or(64 << 20, |b| usize::try_from(b).unwrap_or(usize::MAX));
        self.inner.max_packet.store(bytes, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Runs `text(n)` for each run of `items` that fits a statement
    /// ([`runs`]), each run its own call, binding `placeholders` parameters
    /// per item with `params`.
    pub(super) async fn exec_runs<T>(
        &self, items: &[T], size: impl Fn(&T) -> usize,
        params: impl Fn(&T, &mut Vec<mysql_async::Value>), text: impl Fn(usize) -> String,
        placeholders: usize,
    ) -> Result<()> {
        let budget = budget(self.max_packet().await?);
        let sizes: Vec<usize> = items.iter().map(size).collect();
        for run in runs(&sizes, placeholders, budget) {
            let run = &items[run];
            let text = &text(run.len());
            let params = &params;
            self.call(Access::Write, |mut conn| async move {
                let mut values = Vec::with_capacity(run.len() * placeholders);
                for item in run {
                    params(item, &mut values);
                }
                conn.exec_drop(text.as_str(), Params::Positional(values))
                    .await
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_rows_split_by_the_packet() {
        // 1000 rows of about 64 KiB against a 16 MiB packet.
        let sizes = vec![64 * 1024 + 30; 1000];
        let budget = budget(16 * 1024 * 1024);
        let runs = runs(&sizes, 3, budget);
        assert!(runs.len() >= 4, "{runs:?}");
        for r in &runs {
            assert!(sizes[r.clone()].iter().sum::<usize>() <= budget, "{r:?}");
        }
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 1000);
        assert_eq!(runs.first().unwrap().start, 0);
        assert!(runs.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn narrow_rows_split_by_count_and_placeholders() {
        let sizes = vec![40; 2500];
        let lens: Vec<usize> = runs(&sizes, 2, budget(1 << 24))
            .iter()
            .map(|r| r.len())
            .collect();
        assert_eq!(lens, [1000, 1000, 500]);
        // 200 columns: 327 rows use 65400 placeholders, 328 would not fit.
        let lens: Vec<usize> = runs(&sizes[..700], 200, budget(1 << 24))
            .iter()
            .map(|r| r.len())
            .collect();
        assert_eq!(lens, [327, 327, 46]);
    }

    #[test]
    fn an_oversized_item_goes_alone() {
        let runs = runs(&[10, 5000, 10], 1, 100);
        assert_eq!(runs, [0..1, 1..2, 2..3]);
        assert!(super::runs(&[], 1, 100).is_empty());
    }

    #[test]
    fn the_budget_stays_in_one_packet() {
        assert_eq!(budget(1 << 30), MAX_PAYLOAD - HEADROOM);
        assert_eq!(budget(1 << 20), (1 << 20) - HEADROOM);
        assert_eq!(budget(10), 1);
    }
}
