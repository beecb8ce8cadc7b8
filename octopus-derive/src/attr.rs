//! Parses `#[octopus(...)]` attributes, collecting every error. Each
//! attribute may be written once per struct or field; rules that involve
//! several attributes or fields are `valid`'s.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Token};

use crate::ctxt::Ctxt;

/// The attribute's own path: `#[octopus(...)]`.
pub const OCTOPUS: &str = "octopus";
pub const TABLE: &str = "table";
pub const KEY: &str = "key";
pub const RENAME: &str = "rename";
pub const SKIP: &str = "skip";
pub const JSON: &str = "json";
pub const VERSION: &str = "version";
pub const CREATED_AT: &str = "created_at";
pub const UPDATED_AT: &str = "updated_at";

/// Every field attribute, in the order error messages list them.
const FIELD_ATTRS: [&str; 7] = [KEY, RENAME, SKIP, JSON, VERSION, CREATED_AT, UPDATED_AT];

/// A flag attribute that was present, with where it was written.
pub type Flag = Option<Span>;

/// `#[octopus(...)]` on the struct.
#[derive(Default)]
pub struct ContainerAttrs {
    pub table: Option<LitStr>,
}

/// `#[octopus(...)]` on a field.
#[derive(Default)]
pub struct FieldAttrs {
    pub key: Flag,
    pub rename: Option<LitStr>,
    pub skip: Flag,
    pub json: Flag,
    pub version: Flag,
    pub created_at: Flag,
    pub updated_at: Flag,
}

impl FieldAttrs {
    /// The attributes whose value the store manages, by name.
    pub fn managed(&self) -> [(&'static str, Flag); 3] {
        [
            (VERSION, self.version),
            (CREATED_AT, self.created_at),
            (UPDATED_AT, self.updated_at),
        ]
    }
}

/// The struct's `#[octopus(...)]`: `table` only.
pub fn container(cx: &mut Ctxt, attrs: &[Attribute]) -> ContainerAttrs {
    let mut out = ContainerAttrs::default();
    for_each_meta(cx, attrs, |cx, meta| {
        let name = path_name(&meta.path);
        match name.as_str() {
            TABLE => {
                if let Some(lit) = string_value(cx, &meta)? {
                    set_once(cx, &mut out.table, &meta, lit);
                }
            }
            _ => {
                let message =
                    format!("unknown octopus attribute `{name}` on a struct; expected `{TABLE}`");
                return unknown(cx, &meta, message);
            }
        }
        Ok(())
    });
    out
}

/// A field's `#[octopus(...)]`; each flag keeps where it was written.
pub fn field(cx: &mut Ctxt, attrs: &[Attribute]) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for_each_meta(cx, attrs, |cx, meta| {
        let name = path_name(&meta.path);
        let flag = match name.as_str() {
            KEY => &mut out.key,
            SKIP => &mut out.skip,
            JSON => &mut out.json,
            VERSION => &mut out.version,
            CREATED_AT => &mut out.created_at,
            UPDATED_AT => &mut out.updated_at,
            RENAME => {
                if let Some(lit) = string_value(cx, &meta)? {
                    set_once(cx, &mut out.rename, &meta, lit);
                }
                return Ok(());
            }
            _ => {
                let expected = FIELD_ATTRS.join(", ");
                let message =
                    format!("unknown octopus attribute `{name}`; expected one of {expected}");
                return unknown(cx, &meta, message);
            }
        };
        // A flag given a value is still taken as set, so that the model's
        // other checks (a missing key, say) do not report it again.
        set_once(cx, flag, &meta, meta.path.span());
        if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
            let message = format!("octopus attribute `{name}` takes no value");
            cx.error(meta.path.span(), message);
            skip_value(&meta)?;
        }
        Ok(())
    });
    out
}

/// Calls `f` on each item of every `#[octopus(...)]`, keeping syn's parse
/// errors (`#[octopus]` without a list, a missing `,`) with the others.
fn for_each_meta(
    cx: &mut Ctxt, attrs: &[Attribute],
    mut f: impl FnMut(&mut Ctxt, ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    for attr in attrs.iter().filter(|a| a.path().is_ident(OCTOPUS)) {
        if let Err(e) = attr.parse_nested_meta(|meta| f(cx, meta)) {
            cx.push(e);
        }
    }
}

/// Stores an attribute's value, or reports the attribute as a duplicate at
/// its second occurrence.
fn set_once<T>(cx: &mut Ctxt, slot: &mut Option<T>, meta: &ParseNestedMeta<'_>, value: T) {
    if slot.is_some() {
        let name = path_name(&meta.path);
        cx.error(
            meta.path.span(),
            format!("duplicate octopus attribute `{name}`"),
        );
    } else {
        *slot = Some(value);
    }
}

/// The string literal after `name =`. A missing or malformed value is
/// reported and stepped over (`None`), so the attribute's other items are
/// still read.
fn string_value(cx: &mut Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<LitStr>> {
    let name = path_name(&meta.path);
    let message = format!("octopus attribute `{name}` needs a string: `{name} = \"...\"`");
    if !meta.input.peek(Token![=]) {
        cx.error(meta.path.span(), message);
        skip_value(meta)?;
        return Ok(None);
    }
    match meta.value()?.parse()? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(Some(lit)),
        other => {
            cx.push(syn::Error::new_spanned(other, message));
            Ok(None)
        }
    }
}

/// Reports an unknown attribute and steps over its value, if any, so that
/// parsing goes on and later errors are reported too.
fn unknown(cx: &mut Ctxt, meta: &ParseNestedMeta<'_>, message: String) -> syn::Result<()> {
    cx.error(meta.path.span(), message);
    skip_value(meta)
}

/// Consumes `= value` or `(...)` after an attribute's name.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _group: proc_macro2::TokenTree = meta.input.parse()?;
    }
    Ok(())
}

fn path_name(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}
