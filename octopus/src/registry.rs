//! The registry: an application lists its models once, and asking for the
//! Dao of a model that is not listed does not compile.

use crate::dao::Dao;

/// Implemented by a registry (made with [`crate::models!`]) for each model it
/// lists. It is what makes `registry.dao::<T>()` a compile-time check.
#[diagnostic::on_unimplemented(
    message = "model `{T}` is not registered in `{Self}`",
    label = "`{Self}` has no Dao for `{T}`",
    note = "add a field for it to the `octopus::models!` invocation that defines `{Self}`, e.g. `my_models: {T}`"
)]
pub trait HasDao<T> {
    /// The Dao of `T`.
    fn dao_ref(&self) -> &Dao<T>;
}

/// Declares a registry: a struct with one [`Dao`] field per model, opened in
/// one call that ensures every model's table in every store of the plan.
///
/// ```
/// use octopus::{Model, MemoryStore, Plan};
///
/// #[derive(Debug, Model)]
/// struct Book { #[octopus(key)] id: u64, title: String }
/// #[derive(Debug, Model)]
/// struct User { #[octopus(key)] name: String }
///
/// octopus::models! {
///     /// Everything the library application stores.
///     pub struct Library { books: Book, users: User }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let db = Library::open(Plan::new(MemoryStore::new())).await?;
/// db.books.create(&mut Book { id: 1, title: "Dune".into() }).await?;
/// let book = db.dao::<Book>().read(1).await?;   // or `db.books`
/// assert_eq!(book.unwrap().title, "Dune");
/// db.close().await?;
/// # Ok::<(), octopus::Error>(())
/// # }).unwrap();
/// ```
///
/// Asking a registry for a model it does not list is a compile error that
/// names the registry and the model and says to add it here.
#[macro_export]
macro_rules! models {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $field:ident : $model:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                #[doc = concat!("The Dao of `", stringify!($model), "`.")]
                pub $field: $crate::Dao<$model>,
            )*
        }

        impl $name {
            /// The schema of every model the registry lists, in order: what
            /// [`Migration`]($crate::migrate::Migration) copies and verifies.
            pub const SCHEMAS: &'static [&'static $crate::Schema] =
                &[$( <$model as $crate::Model>::SCHEMA ),*];

            /// Opens every model's Dao over its plan (a [`Plan`] for all,
            /// or [`Plans`] per table), ensuring each model's table in its
            /// primary. A per-table plan for a table no listed model uses
            /// is an error naming it.
            ///
            /// [`Plan`]: $crate::Plan
            /// [`Plans`]: $crate::Plans
            pub async fn open(
                plans: impl ::core::convert::Into<$crate::Plans>,
            ) -> $crate::Result<Self> {
                let plans: $crate::Plans = plans.into();
                plans.check_tables(&[$( <$model as $crate::Model>::SCHEMA.table() ),*])?;
                ::core::result::Result::Ok($name {
                    $( $field: $crate::Dao::<$model>::open(
                        plans.for_table(<$model as $crate::Model>::SCHEMA.table()).clone(),
                    ).await?, )*
                })
            }

            /// Closes every plan behind the registry's Daos (each once):
            /// stops their fallbacks' background work and releases what
            /// they hold (a journal's directory lock) before returning.
            pub async fn close(&self) -> $crate::Result<()> {
                let mut seen: ::std::vec::Vec<&::std::sync::Arc<$crate::Plan>> =
                    ::std::vec::Vec::new();
                $(
                    let plan = self.$field.plan();
                    if !seen.iter().any(|p| ::std::sync::Arc::ptr_eq(p, plan)) {
                        seen.push(plan);
                        plan.close().await?;
                    }
                )*
                ::core::result::Result::Ok(())
            }

            /// The Dao of model `T`; does not compile unless `T` is listed.
            pub fn dao<T>(&self) -> &$crate::Dao<T>
            where
                Self: $crate::HasDao<T>,
            {
                <Self as $crate::HasDao<T>>::dao_ref(self)
            }
        }

        $(
            impl $crate::HasDao<$model> for $name {
                fn dao_ref(&self) -> &$crate::Dao<$model> {
                    &self.$field
                }
            }
        )*
    };
}
