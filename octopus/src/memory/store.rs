//! [`MemoryStore`] as a [`Store`]: every write under its shard's lock.

use std::time::Instant;

use super::{Change, MemoryStore, each_key, read, table_id};
use crate::schema::Schema;
use crate::store::{BoxFuture, Store, check_key, version_of};
use crate::value::{Key, Record};
use crate::{Error, Result};

/// Drops every expired row of the shard if there is one, else the least
/// recently touched row of a sample. Returns whether a row was dropped.
fn conflict(schema: &'static Schema, key: &Key, expected: u64, actual: u64) -> Error {
    Error::Conflict {
        table: schema.table(),
        key: key.to_string(),
        expected,
        actual,
    }
}

impl Store for MemoryStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn ensure_schema<'a>(&'a self, _schema: &'static Schema) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        Box::pin(async move {
            check_key(schema, key)?;
            Ok(self.lookup(schema, key, Instant::now()))
        })
    }

    fn get_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        Box::pin(async move { each_key(schema, keys, |k, now| self.lookup(schema, k, now)) })
    }

    fn insert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.modify_row(schema, record, |key, current| {
                match current.and_then(|c| c.record) {
                    Some(_) => Err(Error::already_exists(schema.table(), key.to_string())),
                    None => Ok((self.put(record), ())),
                }
            })
        })
    }

    fn upsert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.modify_row(schema, record, |_, _| Ok((self.put(record), ()))) })
    }

    fn update<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.modify_row(schema, record, |key, current| {
                let Some(current) = current.and_then(|c| c.record) else {
                    return Err(Error::not_found(schema.table(), key.to_string()));
                };
                if let Some(expected) = expected_version {
                    let actual = version_of(schema, current).unwrap_or(0);
                    if actual != expected {
                        return Err(conflict(schema, key, expected, actual));
                    }
                }
                let mut next = record.clone();
                if let Some(i) = schema.created_at_index() {
                    next.values_mut()[i] = current.values()[i].clone();
                }
                Ok((Change::Put(Some(next), self.ttl), ()))
            })
        })
    }

    fn delete<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            check_key(schema, key)?;
            self.modify(schema, key.clone(), |_, current| {
                Ok(match current {
                    Some(c) => (Change::Remove, c.record.is_some()),
                    None => (Change::Keep, false),
                })
            })
        })
    }

    fn scan<'a>(
        &'a self, schema: &'static Schema, after: Option<&'a Key>, limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        Box::pin(async move {
            let table = table_id(schema);
            let now = Instant::now();
            let mut rows: Vec<(Key, Record)> = Vec::new();
            for shard in self.shards.iter() {
                let shard = read(shard);
                if let Some(t) = shard.tables.get(&table) {
                    rows.extend(
                        t.iter()
                            .filter(|(k, e)| self.live(e, now) && after.is_none_or(|a| *k > a))
                            .filter_map(|(k, e)| Some((k.clone(), e.record.clone()?))),
                    );
                }
            }
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            rows.truncate(limit);
            Ok(rows.into_iter().map(|(_, r)| r).collect())
        })
    }
}
