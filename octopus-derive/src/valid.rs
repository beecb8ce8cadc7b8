//! Rules no single attribute can check: names that are valid identifiers,
//! attributes that exclude each other on a field, exactly one key, at most
//! one field per managed attribute, distinct columns.
//!
//! Field types are not checked here: the generated code names the trait
//! each role needs (`Field`, `KeyField`, `VersionField`, `TimestampField`),
//! whose `#[diagnostic::on_unimplemented]` message says what is wrong, so
//! any type or alias that implements the trait is accepted.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::LitStr;

use crate::ast::{Field, Input};
use crate::attr::{CREATED_AT, FieldAttrs, Flag, JSON, KEY, RENAME, TABLE, UPDATED_AT, VERSION};
use crate::ctxt::Ctxt;

const IDENT_RULE: &str =
    "an identifier of ASCII letters, digits and `_`, not starting with a digit, at most 64 bytes";

/// Whether `name` can be a table or column name, the same rule as
/// `octopus::is_valid_identifier`.
fn is_identifier(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Reports every rule `input` breaks; the attributes were parsed already.
pub fn check(cx: &mut Ctxt, input: &Input<'_>) {
    check_table(cx, input);
    for field in &input.fields {
        check_field(cx, &field.attrs);
    }
    check_roles(cx, input);
    check_columns(cx, input);
}

fn check_table(cx: &mut Ctxt, input: &Input<'_>) {
    match &input.attrs.table {
        Some(lit) => check_name(cx, lit, TABLE),
        None if !is_identifier(&input.table()) => cx.error(
            input.ident.span(),
            format!(
                "the default table name `{}` is not {IDENT_RULE}; set #[octopus(table = \"...\")]",
                input.table()
            ),
        ),
        None => {}
    }
}

fn check_name(cx: &mut Ctxt, lit: &LitStr, attr: &str) {
    if !is_identifier(&lit.value()) {
        cx.error(
            lit.span(),
            format!("`{attr}` must be {IDENT_RULE}, found {:?}", lit.value()),
        );
    }
}

/// The attributes of one field that exclude each other.
fn check_field(cx: &mut Ctxt, a: &FieldAttrs) {
    if let Some(lit) = &a.rename {
        check_name(cx, lit, RENAME);
    }
    if let Some(skip) = a.skip {
        check_skip(cx, a, skip);
        return;
    }
    if let (Some(key), Some(_)) = (a.key, a.json) {
        cx.error(
            key,
            "a key cannot be `json`: keys are String, uuid::Uuid or an integer",
        );
    }
    check_managed(cx, a);
}

/// A skipped field is not stored, so it can have no other role.
fn check_skip(cx: &mut Ctxt, a: &FieldAttrs, skip: Span) {
    let stored = [(KEY, a.key), (JSON, a.json)].into_iter();
    for (name, flag) in stored.chain(a.managed()) {
        if flag.is_some() {
            cx.error(
                skip,
                format!("`skip` cannot be combined with `{name}`: a skipped field is not stored"),
            );
        }
    }
    if a.rename.is_some() {
        cx.error(
            skip,
            "`skip` cannot be combined with `rename`: a skipped field has no column",
        );
    }
}

/// A managed field (version, timestamps) is written by the store: it is
/// not the key, not JSON, and has one role.
fn check_managed(cx: &mut Ctxt, a: &FieldAttrs) {
    let mut first: Option<&str> = None;
    for (name, flag) in a.managed() {
        let Some(span) = flag else { continue };
        if a.key.is_some() {
            cx.error(span, format!("the key cannot also be the `{name}` field"));
        }
        if a.json.is_some() {
            cx.error(span, format!("a `{name}` field cannot be `json`"));
        }
        match first {
            Some(first) => cx.error(
                span,
                format!("`{name}` cannot be combined with `{first}`: a field has at most one of `{VERSION}`, `{CREATED_AT}`, `{UPDATED_AT}`"),
            ),
            None => first = Some(name),
        }
    }
}

/// Exactly one key, at most one field per managed attribute.
fn check_roles(cx: &mut Ctxt, input: &Input<'_>) {
    if unique(cx, input, KEY, "exactly one", |a| a.key).is_none() {
        cx.error(
            input.ident.span(),
            "missing #[octopus(key)]: mark exactly one field as the model's key",
        );
    }
    unique(cx, input, VERSION, "at most one", |a| a.version);
    unique(cx, input, CREATED_AT, "at most one", |a| a.created_at);
    unique(cx, input, UPDATED_AT, "at most one", |a| a.updated_at);
}

/// The first field with attribute `name`; every later one is an error.
fn unique<'i, 'a>(
    cx: &mut Ctxt, input: &'i Input<'a>, name: &str, quota: &str,
    flag: impl Fn(&FieldAttrs) -> Flag,
) -> Option<&'i Field<'a>> {
    let mut first: Option<&Field<'_>> = None;
    for field in &input.fields {
        let Some(span) = flag(&field.attrs) else {
            continue;
        };
        match first {
            Some(first) => cx.error(
                span,
                format!(
                    "duplicate `{name}` field: `{}` is already the `{name}` field; a model has {quota} #[octopus({name})] field",
                    first.ident
                ),
            ),
            None => first = Some(field),
        }
    }
    first
}

/// Two stored fields cannot share a column; the error points at the
/// `rename` that collides, or at the field's name.
fn check_columns(cx: &mut Ctxt, input: &Input<'_>) {
    let mut columns: HashMap<String, &Field<'_>> = HashMap::new();
    for field in input.fields.iter().filter(|f| f.attrs.skip.is_none()) {
        let column = field.column();
        if let Some(first) = columns.get(&column) {
            let span = match &field.attrs.rename {
                Some(lit) => lit.span(),
                None => field.ident.span(),
            };
            cx.error(
                span,
                format!(
                    "column `{column}` is already used by field `{}`",
                    first.ident
                ),
            );
        } else {
            columns.insert(column, field);
        }
    }
}

#[cfg(test)]
mod tests {
    use syn::{DeriveInput, parse_quote};

    use super::*;

    /// Every message `from_syn` and `check` report for `input`, in order.
    fn errors(input: DeriveInput) -> Vec<String> {
        let mut cx = Ctxt::new();
        if let Some(input) = Input::from_syn(&mut cx, &input) {
            check(&mut cx, &input);
        }
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn managed_fields_are_not_checked_by_type_spelling() {
        let input = parse_quote! {
            struct Note {
                #[octopus(key)]
                id: Id,
                #[octopus(version)]
                revision: Revision,
                #[octopus(created_at)]
                created: Millis,
                #[octopus(updated_at)]
                updated: crate::Millis,
            }
        };
        assert_eq!(errors(input), Vec::<String>::new());
    }

    #[test]
    fn every_error_is_reported_not_only_the_first() {
        let input = parse_quote! {
            #[octopus(table = "a b")]
            struct Book {
                #[octopus(skip, key)]
                id: u64,
                #[octopus(version, version)]
                v: u64,
                #[octopus(rename = "v")]
                w: u64,
            }
        };
        let errors = errors(input);
        assert_eq!(errors.len(), 4, "{errors:#?}");
        // Attribute errors first (while reading), then the rules.
        assert!(errors[0].starts_with("duplicate octopus attribute `version`"));
        assert!(errors[1].starts_with("`table` must be"));
        assert!(errors[2].starts_with("`skip` cannot be combined with `key`"));
        assert!(errors[3].starts_with("column `v` is already used by field `v`"));
    }

    #[test]
    fn identifiers_follow_the_schema_rule() {
        assert!(is_identifier("book_2"));
        assert!(is_identifier("_x"));
        assert!(is_identifier(&"a".repeat(64)));
        assert!(!is_identifier(""));
        assert!(!is_identifier("2books"));
        assert!(!is_identifier("book shelf"));
        assert!(!is_identifier("café"));
        assert!(!is_identifier(&"a".repeat(65)));
    }
}
