//! Values built once per model schema (a SQL store's statement texts) and
//! shared by every call after that.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::lock::RwLockExt;
use octopus::Schema;

/// A map from a `'static` schema (by address: each model has one) to a value
/// built from it on first use.
pub(crate) struct PerSchema<T> {
    map: RwLock<HashMap<usize, Arc<T>>>,
}

impl<T> Default for PerSchema<T> {
    fn default() -> Self {
        PerSchema {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<T> PerSchema<T> {
    /// The value for `schema`, built with `make` the first time.
    pub(crate) fn get(
        &self, schema: &'static Schema, make: impl FnOnce(&'static Schema) -> T,
    ) -> Arc<T> {
        let id = schema as *const Schema as usize;
        // A poisoned lock only means another thread panicked while holding
        // it; every insertion is a single map operation, so the map is sound.
        if let Some(v) = self.map.reading().get(&id) {
            return v.clone();
        }
        let v = Arc::new(make(schema));
        self.map.writing().entry(id).or_insert(v).clone()
    }
}
