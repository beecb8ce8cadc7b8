//! Parses `#[octopus(...)]` attributes, collecting every error.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, LitStr};

/// Errors gathered while reading the input, reported together.
#[derive(Default)]
pub struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    pub fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        self.errors.push(syn::Error::new(span, message));
    }

    /// An error spanning all of `tokens` (a whole type, say), not just
    /// their first token.
    pub fn error_spanned(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    pub fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// All errors as one, or `Ok` if there were none.
    pub fn check(self) -> syn::Result<()> {
        let mut errors = self.errors.into_iter();
        let Some(mut first) = errors.next() else {
            return Ok(());
        };
        for e in errors {
            first.combine(e);
        }
        Err(first)
    }
}

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

const FIELD_ATTRS: &str = "key, rename, skip, json, version, created_at, updated_at";

fn set_flag(cx: &mut Ctxt, slot: &mut Flag, name: &str, span: Span) {
    if slot.is_some() {
        cx.error(span, format!("duplicate octopus attribute `{name}`"));
    } else {
        *slot = Some(span);
    }
}

pub fn container(cx: &mut Ctxt, attrs: &[Attribute]) -> ContainerAttrs {
    let mut out = ContainerAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("octopus")) {
        let parsed = attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            if meta.path.is_ident("table") {
                let lit: LitStr = meta.value()?.parse()?;
                if out.table.is_some() {
                    cx.error(span, "duplicate octopus attribute `table`");
                } else {
                    out.table = Some(lit);
                }
            } else {
                let name = path_name(&meta.path);
                cx.error(
                    span,
                    format!("unknown octopus attribute `{name}` on a struct; expected `table`"),
                );
                skip_value(&meta)?;
            }
            Ok(())
        });
        if let Err(e) = parsed {
            cx.push(e);
        }
    }
    out
}

pub fn field(cx: &mut Ctxt, attrs: &[Attribute]) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("octopus")) {
        let parsed = attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            let name = path_name(&meta.path);
            match name.as_str() {
                "key" => set_flag(cx, &mut out.key, "key", span),
                "skip" => set_flag(cx, &mut out.skip, "skip", span),
                "json" => set_flag(cx, &mut out.json, "json", span),
                "version" => set_flag(cx, &mut out.version, "version", span),
                "created_at" => set_flag(cx, &mut out.created_at, "created_at", span),
                "updated_at" => set_flag(cx, &mut out.updated_at, "updated_at", span),
                "rename" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    if out.rename.is_some() {
                        cx.error(span, "duplicate octopus attribute `rename`");
                    } else {
                        out.rename = Some(lit);
                    }
                }
                _ => {
                    cx.error(
                        span,
                        format!(
                            "unknown octopus attribute `{name}`; expected one of {FIELD_ATTRS}"
                        ),
                    );
                    skip_value(&meta)?;
                }
            }
            Ok(())
        });
        if let Err(e) = parsed {
            cx.push(e);
        }
    }
    out
}

fn path_name(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// Consumes `= value` or `(...)` after an unknown attribute so parsing can
/// go on and report later errors too.
fn skip_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _group: proc_macro2::TokenTree = meta.input.parse()?;
    }
    Ok(())
}
