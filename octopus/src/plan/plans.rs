//! [`Plans`]: a registry's plans, a default and per table.

use std::sync::Arc;

use crate::Result;

use super::Plan;

/// The plan of every model of a registry: a default, and per-table plans.
///
/// A [`Plan`] converts into `Plans` (every model uses it).
#[derive(Debug, Clone)]
pub struct Plans {
    default: Arc<Plan>,
    by_table: std::collections::BTreeMap<String, Arc<Plan>>,
}

impl Plans {
    /// Plans where every model uses `default`.
    pub fn new(default: impl Into<Arc<Plan>>) -> Self {
        Plans {
            default: default.into(),
            by_table: Default::default(),
        }
    }

    /// Gives the model stored in `table` its own plan.
    pub fn with_table(mut self, table: impl Into<String>, plan: impl Into<Arc<Plan>>) -> Self {
        self.by_table.insert(table.into(), plan.into());
        self
    }

    /// The plan of the model stored in `table`.
    pub fn for_table(&self, table: &str) -> &Arc<Plan> {
        self.by_table.get(table).unwrap_or(&self.default)
    }

    /// The default plan.
    pub fn default_plan(&self) -> &Arc<Plan> {
        &self.default
    }

    /// Closes every plan once (see [`Plan::close`]).
    pub async fn close(&self) -> Result<()> {
        let mut seen: Vec<&Arc<Plan>> = Vec::new();
        for plan in std::iter::once(&self.default).chain(self.by_table.values()) {
            if !seen.iter().any(|p| Arc::ptr_eq(p, plan)) {
                seen.push(plan);
                plan.close().await?;
            }
        }
        Ok(())
    }

    /// Fails naming a per-table plan whose table no model in `tables` uses
    /// (a typo in a config file, say).
    pub fn check_tables(&self, tables: &[&str]) -> Result<()> {
        match self.by_table.keys().find(|t| !tables.contains(&t.as_str())) {
            Some(t) => Err(crate::Error::config(
                format!("models.{t}"),
                format!(
                    "no registered model is stored in table `{t}` (known: {})",
                    tables.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }
}

impl From<Plan> for Plans {
    fn from(plan: Plan) -> Self {
        Plans::new(plan)
    }
}

impl From<Arc<Plan>> for Plans {
    fn from(plan: Arc<Plan>) -> Self {
        Plans::new(plan)
    }
}
