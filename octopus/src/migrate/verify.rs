//! Verification: both sides read in key order, merged by key, every row
//! compared (floats bit for bit, JSON columns as JSON values, so a
//! database that stores JSON in a normal form of its own still matches).

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use super::Migration;
use crate::Result;
use crate::schema::{ColumnType, Schema};
use crate::store::{Store, key_of};
use crate::value::{Key, Record, Value};

/// How many differing keys a verification lists.
const LISTED: usize = 20;

/// A key whose row differs between the two sides.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// The source has the row, the target does not.
    Missing(Key),
    /// The target has a row the source does not.
    Extra(Key),
    /// Both have the row, with these columns different.
    Differs(Key, Vec<&'static str>),
}

impl Difference {
    /// The key.
    pub fn key(&self) -> &Key {
        match self {
            Difference::Missing(k) | Difference::Extra(k) | Difference::Differs(k, _) => k,
        }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing(k) => write!(f, "key {k}: missing in the target"),
            Difference::Extra(k) => write!(f, "key {k}: in the target only"),
            Difference::Differs(k, columns) => {
                write!(f, "key {k}: differs in {}", columns.join(", "))
            }
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The table.
    pub table: &'static str,
    /// Rows in the source.
    pub source_rows: u64,
    /// Rows in the target.
    pub target_rows: u64,
    /// Keys that differ, in all.
    pub differences: u64,
    /// The first keys that differ, in key order (at most 20).
    pub first: Vec<Difference>,
    /// How long it took.
    pub elapsed: Duration,
}

impl Verified {
    /// Whether both sides hold exactly the same rows.
    pub fn matches(&self) -> bool {
        self.differences == 0 && self.source_rows == self.target_rows
    }
}

/// One side, read in batches in key order.
struct Side<'a> {
    store: &'a dyn Store,
    schema: &'static Schema,
    batch: usize,
    rows: std::vec::IntoIter<Record>,
    after: Option<Key>,
    done: bool,
    count: u64,
}

impl<'a> Side<'a> {
    fn new(store: &'a dyn Store, schema: &'static Schema, batch: usize) -> Self {
        Side {
            store,
            schema,
            batch,
            rows: Vec::new().into_iter(),
            after: None,
            done: false,
            count: 0,
        }
    }

    /// The next row and its key, or `None` at the end.
    async fn next(&mut self) -> Result<Option<(Key, Record)>> {
        if let Some(row) = self.rows.next() {
            self.count += 1;
            return Ok(Some((key_of(self.schema, &row)?, row)));
        }
        if self.done {
            return Ok(None);
        }
        let batch = self
            .store
            .scan(self.schema, self.after.as_ref(), self.batch)
            .await?;
        self.done = batch.len() < self.batch;
        let Some(last) = batch.last() else {
            self.done = true;
            return Ok(None);
        };
        self.after = Some(key_of(self.schema, last)?);
        self.rows = batch.into_iter();
        Box::pin(self.next()).await
    }
}

impl Migration<'_> {
    /// Compares `schema`'s table on both sides: row counts, and every row
    /// by key.
    pub async fn verify(&self, schema: &'static Schema) -> Result<Verified> {
        let started = Instant::now();
        let mut from = Side::new(self.from, schema, self.batch);
        let mut to = Side::new(self.to, schema, self.batch);
        let (mut a, mut b) = (from.next().await?, to.next().await?);
        let mut differences = 0u64;
        let mut first = Vec::new();
        let mut note = |d: Difference| {
            differences += 1;
            if first.len() < LISTED {
                first.push(d);
            }
        };
        loop {
            let order = match (&a, &b) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
            };
            match order {
                Ordering::Less => {
                    if let Some((key, _)) = a.take() {
                        note(Difference::Missing(key));
                    }
                    a = from.next().await?;
                }
                Ordering::Greater => {
                    if let Some((key, _)) = b.take() {
                        note(Difference::Extra(key));
                    }
                    b = to.next().await?;
                }
                Ordering::Equal => {
                    if let (Some((key, ra)), Some((_, rb))) = (&a, &b) {
                        let columns = differing(schema, ra, rb);
                        if !columns.is_empty() {
                            note(Difference::Differs(key.clone(), columns));
                        }
                    }
                    a = from.next().await?;
                    b = to.next().await?;
                }
            }
        }
        Ok(Verified {
            table: schema.table(),
            source_rows: from.count,
            target_rows: to.count,
            differences,
            first,
            elapsed: started.elapsed(),
        })
    }
}

/// The columns whose values differ between `a` and `b`.
fn differing(schema: &'static Schema, a: &Record, b: &Record) -> Vec<&'static str> {
    schema
        .columns()
        .iter()
        .enumerate()
        .filter(|(i, column)| {
            let (x, y) = (a.get(*i), b.get(*i));
            !match (x, y, column.ty()) {
                (Some(Value::Float(x)), Some(Value::Float(y)), _) => x.to_bits() == y.to_bits(),
                (Some(Value::Text(x)), Some(Value::Text(y)), ColumnType::Json) => same_json(x, y),
                _ => x == y,
            }
        })
        .map(|(_, column)| column.name())
        .collect()
}

/// Whether two JSON texts hold the same value (texts that do not parse
/// must be equal as text).
fn same_json(x: &str, y: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(x),
        serde_json::from_str::<serde_json::Value>(y),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => x == y,
    }
}
