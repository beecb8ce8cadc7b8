//! [`Dao`]: typed create / read / update / delete for one model.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::fallback::{Deletion, Write, WriteOutcome};
use crate::model::{Model, now_millis};
use crate::plan::Plan;
use crate::store::normalize_key;
use crate::value::Key;
use crate::{Error, Result};

/// Typed access to one model's rows through a [`Plan`].
///
/// Cheap to clone (one `Arc`); share it freely between tasks.
///
/// What every write maintains:
/// - `create` gives an empty key (nil UUID, empty string) a fresh UUIDv7, and
///   sets `created_at` and `updated_at` to now (unix milliseconds) and
///   `version` to 1;
/// - `update` sets `updated_at` to now and bumps `version`; with a `version`
///   field the update is conditional on the stored version;
/// - a write that fails leaves the model as it was.
pub struct Dao<T> {
    plan: Arc<Plan>,
    _model: PhantomData<fn() -> T>,
}

impl<T> Clone for Dao<T> {
    fn clone(&self) -> Self {
        Dao {
            plan: self.plan.clone(),
            _model: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Dao<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dao")
            .field("model", &std::any::type_name::<T>())
            .field("plan", &self.plan)
            .finish()
    }
}

impl<T: Model> Dao<T> {
    /// A Dao over `plan`. The table must exist: use [`Dao::open`] or a
    /// registry (see [`crate::models!`]) to create it. The model is made
    /// known to the plan's fallback, so its journaled writes replay.
    pub fn new(plan: Arc<Plan>) -> Self {
        plan.register(T::SCHEMA);
        Dao {
            plan,
            _model: PhantomData,
        }
    }

    /// A Dao over `plan`, after ensuring the model's table in every store.
    pub async fn open(plan: Arc<Plan>) -> Result<Self> {
        plan.ensure_schema(T::SCHEMA).await?;
        Ok(Dao::new(plan))
    }

    /// The plan behind this Dao.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Stores a new row. An empty key gets a UUIDv7 (written back into
    /// `model`), and the managed fields are stamped. Fails with
    /// [`Error::AlreadyExists`] if the key is taken; nothing is written then
    /// and `model` is unchanged.
    pub async fn create(&self, model: &mut T) -> Result<WriteOutcome> {
        let saved = Saved::of(model);
        let filled = model.fill_key();
        let now = now_millis();
        model.set_created_at(now);
        model.set_updated_at(now);
        if model.version().is_some() {
            model.set_version(1);
        }
        let outcome = self.create_stamped(model).await;
        if outcome.is_err() {
            saved.restore(model, filled);
        }
        outcome
    }

    async fn create_stamped(&self, model: &T) -> Result<WriteOutcome> {
        let record = model.to_record()?;
        let (outcome, _) = self.plan.write(T::SCHEMA, Write::Insert(record)).await?;
        Ok(outcome)
    }

    /// The row with `key`, or `None`. Integer keys convert to the key
    /// column's signedness (`dao.read(5)` works for a `u64` key); a key of
    /// the wrong type is [`Error::Invalid`].
    pub async fn read(&self, key: impl Into<Key>) -> Result<Option<T>> {
        let key = normalize_key(T::SCHEMA, key.into())?;
        match self.plan.read(T::SCHEMA, &key).await? {
            Some(record) => T::from_record(record).map(Some),
            None => Ok(None),
        }
    }

    /// The rows with `keys`, one slot per key in order, batched per store.
    pub async fn read_many<K: Into<Key>>(
        &self, keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<T>>> {
        let keys = keys
            .into_iter()
            .map(|k| normalize_key(T::SCHEMA, k.into()))
            .collect::<Result<Vec<_>>>()?;
        self.plan
            .read_many(T::SCHEMA, &keys)
            .await?
            .into_iter()
            .map(|r| r.map(T::from_record).transpose())
            .collect()
    }

    /// Replaces the stored row with `model` (all columns but the key and
    /// `created_at`). [`Error::NotFound`] if there is no such row. With a
    /// `version` field, the write happens only if the stored version equals
    /// `model`'s; otherwise [`Error::Conflict`] and nothing is written. On
    /// success `model` carries the new version and `updated_at`.
    pub async fn update(&self, model: &mut T) -> Result<WriteOutcome> {
        let saved = Saved::of(model);
        let expected = model.version();
        if let Some(v) = expected {
            let next = v.checked_add(1).ok_or_else(|| {
                Error::invalid(format!(
                    "table `{}`, key {}: version {v} cannot be incremented",
                    T::SCHEMA.table(),
                    model.key()
                ))
            })?;
            model.set_version(next);
        }
        model.set_updated_at(now_millis());
        let outcome = self.update_stamped(model, expected).await;
        if outcome.is_err() {
            saved.restore(model, false);
        }
        outcome
    }

    async fn update_stamped(&self, model: &T, expected: Option<u64>) -> Result<WriteOutcome> {
        let record = model.to_record()?;
        let write = Write::Update {
            record,
            expected_version: expected,
        };
        let (outcome, _) = self.plan.write(T::SCHEMA, write).await?;
        Ok(outcome)
    }

    /// Deletes the row with `key`. Deleting a missing key is **not** an
    /// error ([`Deletion::NotFound`]), so deletes can be retried and replayed
    /// safely.
    pub async fn delete(&self, key: impl Into<Key>) -> Result<Deletion> {
        let key = normalize_key(T::SCHEMA, key.into())?;
        let write = Write::Delete {
            key,
            expected_version: None,
        };
        let (outcome, existed) = self.plan.write(T::SCHEMA, write).await?;
        Ok(match (outcome, existed) {
            (WriteOutcome::Primary, true) => Deletion::Deleted,
            (WriteOutcome::Primary, false) => Deletion::NotFound,
            _ => Deletion::Journaled,
        })
    }
}

/// The managed fields of a model before a write, restored if it fails.
struct Saved {
    version: Option<u64>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
}

impl Saved {
    fn of<T: Model>(model: &T) -> Self {
        Saved {
            version: model.version(),
            created_at: model.created_at(),
            updated_at: model.updated_at(),
        }
    }

    fn restore<T: Model>(self, model: &mut T, clear_key: bool) {
        if clear_key {
            model.clear_key();
        }
        if let Some(v) = self.version {
            model.set_version(v);
        }
        if let Some(t) = self.created_at {
            model.set_created_at(t);
        }
        if let Some(t) = self.updated_at {
            model.set_updated_at(t);
        }
    }
}
