//! The primary as a later link of a chain replays into it.

use std::sync::Arc;

use crate::change::Change;
use crate::fallback::Fallback;
use crate::schema::Schema;
use crate::store::{BoxFuture, Store};
use crate::value::{Key, Record};
use crate::{Error, Result};

/// The primary as a later link replays into it: a change of a key an
/// earlier link still holds waits (see the module docs).
pub(super) struct Behind {
    pub primary: Arc<dyn Store>,
    pub earlier: Vec<Arc<dyn Fallback>>,
}

impl Behind {
    /// The first change of `changes` whose key an earlier link may hold.
    async fn blocked(&self, schema: &'static Schema, changes: &[Change]) -> Option<Key> {
        for change in changes {
            for link in &self.earlier {
                if link.has_pending() && link.must_queue(schema, &change.key).await {
                    return Some(change.key.clone());
                }
            }
        }
        None
    }
}

impl Store for Behind {
    fn name(&self) -> &str {
        self.primary.name()
    }

    fn ensure_schema<'a>(&'a self, schema: &'static Schema) -> BoxFuture<'a, Result<()>> {
        self.primary.ensure_schema(schema)
    }

    fn get<'a>(
        &'a self, schema: &'static Schema, key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<Record>>> {
        self.primary.get(schema, key)
    }

    fn get_many<'a>(
        &'a self, schema: &'static Schema, keys: &'a [Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Record>>>> {
        self.primary.get_many(schema, keys)
    }

    fn insert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        self.primary.insert(schema, record)
    }

    fn upsert<'a>(
        &'a self, schema: &'static Schema, record: &'a Record,
    ) -> BoxFuture<'a, Result<()>> {
        self.primary.upsert(schema, record)
    }

    fn update<'a>(
        &'a self, schema: &'static Schema, record: &'a Record, expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<()>> {
        self.primary.update(schema, record, expected_version)
    }

    fn delete<'a>(&'a self, schema: &'static Schema, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        self.primary.delete(schema, key)
    }

    fn validate(&self, schema: &'static Schema, record: &Record) -> Result<()> {
        self.primary.validate(schema, record)
    }

    fn apply<'a>(
        &'a self, schema: &'static Schema, changes: &'a [Change],
    ) -> BoxFuture<'a, Result<Vec<Result<()>>>> {
        Box::pin(async move {
            if let Some(key) = self.blocked(schema, changes).await {
                return Err(Error::unavailable(
                    self.primary.name(),
                    format!(
                        "table `{}`: key {key} has older entries pending in an earlier fallback (or it cannot say): replayed after them",
                        schema.table()
                    ),
                ));
            }
            self.primary.apply(schema, changes).await
        })
    }

    fn scan<'a>(
        &'a self, schema: &'static Schema, after: Option<&'a Key>, limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Record>>> {
        self.primary.scan(schema, after, limit)
    }
}
