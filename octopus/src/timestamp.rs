//! What `#[octopus(created_at)]` and `#[octopus(updated_at)]` need of a
//! field's type.

use crate::Field;

/// A type usable as an `#[octopus(created_at)]` or `#[octopus(updated_at)]`
/// field: unix milliseconds, which the store sets itself on writes (see
/// [`now_millis`](crate::now_millis)).
///
/// Implemented for `i64`. The derive checks a field through this trait,
/// not by how its type is spelled, so an alias works wherever `i64` does
/// (as an alias of an integer works for `#[octopus(version)]`):
///
/// ```
/// use octopus::Model;
///
/// type Millis = i64;
/// type Revision = u32;
///
/// #[derive(Model)]
/// struct Note {
///     #[octopus(key)]
///     id: u64,
///     #[octopus(version)]
///     revision: Revision,
///     #[octopus(created_at)]
///     created: Millis,
///     #[octopus(updated_at)]
///     updated: Millis,
/// }
///
/// assert_eq!(Note::SCHEMA.version_index(), Some(1));
/// assert_eq!(Note::SCHEMA.created_at_index(), Some(2));
/// assert_eq!(Note::SCHEMA.updated_at_index(), Some(3));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an octopus timestamp",
    label = "`created_at` and `updated_at` fields must be `i64`",
    note = "a timestamp is unix milliseconds, as `octopus::now_millis()` returns"
)]
pub trait TimestampField: Field {
    /// The field as unix milliseconds.
    fn to_millis(&self) -> i64;
    /// The field from unix milliseconds.
    fn from_millis(millis: i64) -> Self;
}

impl TimestampField for i64 {
    fn to_millis(&self) -> i64 {
        *self
    }
    fn from_millis(millis: i64) -> Self {
        millis
    }
}
