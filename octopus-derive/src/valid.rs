//! Rules that span fields: exactly one key, at most one of each managed
//! field, valid names, and types the managed attributes need.

use std::collections::HashMap;

use syn::{LitStr, Type};

use crate::ast::{Field, Input};
use crate::attr::Ctxt;

const IDENT_RULE: &str =
    "an identifier of ASCII letters, digits and `_`, not starting with a digit, at most 64 bytes";

pub fn is_identifier(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

pub fn check(cx: &mut Ctxt, input: &Input<'_>) {
    check_name(cx, input.attrs.table.as_ref(), "table");
    if input.attrs.table.is_none() && !is_identifier(&input.table()) {
        cx.error(
            input.ident.span(),
            format!(
                "the default table name `{}` is not {IDENT_RULE}; set #[octopus(table = \"...\")]",
                input.table()
            ),
        );
    }

    let mut key: Option<&Field<'_>> = None;
    let mut roles: HashMap<&str, &Field<'_>> = HashMap::new();
    let mut columns: HashMap<String, &Field<'_>> = HashMap::new();

    for field in &input.fields {
        let a = &field.attrs;
        check_name(cx, a.rename.as_ref(), "rename");

        if let Some(skip) = a.skip {
            let others = [
                ("key", a.key),
                ("json", a.json),
                ("version", a.version),
                ("created_at", a.created_at),
                ("updated_at", a.updated_at),
            ];
            for (name, flag) in others {
                if flag.is_some() {
                    cx.error(
                        skip,
                        format!(
                            "`skip` cannot be combined with `{name}`: a skipped field is not stored"
                        ),
                    );
                }
            }
            if a.rename.is_some() {
                cx.error(
                    skip,
                    "`skip` cannot be combined with `rename`: a skipped field has no column",
                );
            }
            continue;
        }

        if let Some(span) = a.key {
            match key {
                Some(first) => cx.error(
                    span,
                    format!(
                        "duplicate key: `{}` is already the key; a model has exactly one #[octopus(key)] field",
                        first.ident
                    ),
                ),
                None => key = Some(field),
            }
            if a.json.is_some() {
                cx.error(
                    span,
                    "a key cannot be `json`: keys are String, uuid::Uuid or an integer",
                );
            }
        }

        let managed = [
            ("version", a.version),
            ("created_at", a.created_at),
            ("updated_at", a.updated_at),
        ];
        let mut managed_count = 0;
        for (name, flag) in managed {
            let Some(span) = flag else { continue };
            managed_count += 1;
            if let Some(first) = roles.get(name) {
                cx.error(
                    span,
                    format!("duplicate `{name}` field: `{}` already has it", first.ident),
                );
            } else {
                roles.insert(name, field);
            }
            if a.key.is_some() {
                cx.error(span, format!("the key cannot also be the `{name}` field"));
            }
            if a.json.is_some() {
                cx.error(span, format!("a `{name}` field cannot be `json`"));
            }
            check_managed_type(cx, name, field.ty);
        }
        if managed_count > 1 {
            cx.error(
                field.ident.span(),
                "a field can have only one of `version`, `created_at`, `updated_at`",
            );
        }

        let column = field.column();
        if let Some(first) = columns.get(&column) {
            cx.error(
                field.ident.span(),
                format!(
                    "column `{column}` is already used by field `{}`",
                    first.ident
                ),
            );
        } else {
            columns.insert(column, field);
        }
    }

    if key.is_none() {
        cx.error(
            input.ident.span(),
            "missing #[octopus(key)]: mark exactly one field as the model's key",
        );
    }
}

fn check_name(cx: &mut Ctxt, lit: Option<&LitStr>, what: &str) {
    if let Some(lit) = lit
        && !is_identifier(&lit.value())
    {
        cx.error(
            lit.span(),
            format!("`{what}` must be {IDENT_RULE}, found {:?}", lit.value()),
        );
    }
}

/// The last path segment of a plain type (`u64`, `std::primitive::u64`).
fn type_name(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            let seg = p.path.segments.last()?;
            seg.arguments.is_none().then(|| seg.ident.to_string())
        }
        Type::Group(g) => type_name(&g.elem),
        Type::Paren(p) => type_name(&p.elem),
        _ => None,
    }
}

fn check_managed_type(cx: &mut Ctxt, role: &str, ty: &Type) {
    let name = type_name(ty);
    let name = name.as_deref();
    if role == "version" {
        const INTS: &[&str] = &["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"];
        if !name.is_some_and(|n| INTS.contains(&n)) {
            cx.error_spanned(
                ty,
                "#[octopus(version)] needs an integer field (i8..i64 or u8..u64)",
            );
        }
    } else if name != Some("i64") {
        cx.error_spanned(
            ty,
            format!("#[octopus({role})] needs an `i64` field (unix milliseconds)"),
        );
    }
}
