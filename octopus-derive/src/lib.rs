//! The `#[derive(Model)]` macro of Octopus. Use it through the `octopus`
//! crate, which re-exports it and documents its attributes.
//!
//! ```
//! use octopus::Model;
//!
//! #[derive(Model)]
//! #[octopus(table = "books")]
//! struct Book {
//!     #[octopus(key)]
//!     id: u64,
//!     #[octopus(rename = "name")]
//!     title: String,
//! }
//!
//! assert_eq!(Book::SCHEMA.table(), "books");
//! assert_eq!(Book::SCHEMA.columns()[1].name(), "name");
//! ```
//!
//! One pipeline, one file per step: `ast` reads the struct, `attr` parses
//! `#[octopus(...)]`, `valid` checks the rules that span fields, and
//! `expand` writes the impl. Errors are gathered in a `ctxt::Ctxt` and
//! reported together, each at the offending token; field types are checked
//! by the traits the generated code uses. On error, `fallback` adds a stub
//! impl so the user's other code does not fail in a cascade.

#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

mod ast;
mod attr;
mod ctxt;
mod expand;
mod fallback;
mod valid;

/// Derives `octopus::Model` for a struct with named fields. See the `octopus`
/// crate's documentation for the attributes.
#[proc_macro_derive(Model, attributes(octopus))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
