//! The derive's view of the input: a struct with named fields and their
//! parsed attributes, each node keeping the syn node it came from for spans.

use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attr::{self, ContainerAttrs, Ctxt, FieldAttrs};

pub struct Input<'a> {
    pub ident: &'a Ident,
    pub attrs: ContainerAttrs,
    pub fields: Vec<Field<'a>>,
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub attrs: FieldAttrs,
}

impl Field<'_> {
    /// The column name: `rename`, or the field name without `r#`.
    pub fn column(&self) -> String {
        match &self.attrs.rename {
            Some(lit) => lit.value(),
            None => {
                let name = self.ident.to_string();
                name.strip_prefix("r#").map(str::to_owned).unwrap_or(name)
            }
        }
    }
}

impl<'a> Input<'a> {
    /// Reads a struct with named fields, or reports what the input is instead.
    pub fn from_syn(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let attrs = attr::container(cx, &input.attrs);
        if let Some(param) = input.generics.params.first() {
            cx.error(
                param.span(),
                "#[derive(Model)] does not support generic structs: a model's schema is fixed at compile time",
            );
        } else if let Some(clause) = &input.generics.where_clause {
            cx.error(
                clause.span(),
                "#[derive(Model)] does not support where clauses",
            );
        }
        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named,
                Fields::Unnamed(unnamed) => {
                    cx.error(
                        unnamed.span(),
                        "#[derive(Model)] needs named fields: a tuple struct's fields have no column names",
                    );
                    return None;
                }
                Fields::Unit => {
                    cx.error(
                        input.ident.span(),
                        "#[derive(Model)] needs a struct with named fields, one of them the key",
                    );
                    return None;
                }
            },
            Data::Enum(data) => {
                cx.error(
                    data.enum_token.span(),
                    "#[derive(Model)] supports only structs with named fields, not enums",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error(
                    data.union_token.span(),
                    "#[derive(Model)] supports only structs with named fields, not unions",
                );
                return None;
            }
        };
        let fields = named
            .named
            .iter()
            .filter_map(|f| {
                Some(Field {
                    ident: f.ident.as_ref()?,
                    ty: &f.ty,
                    attrs: attr::field(cx, &f.attrs),
                })
            })
            .collect();
        Some(Input {
            ident: &input.ident,
            attrs,
            fields,
        })
    }

    /// The table name: `table = "..."`, or the struct name in snake_case.
    pub fn table(&self) -> String {
        match &self.attrs.table {
            Some(lit) => lit.value(),
            None => snake_case(&self.ident.to_string()),
        }
    }
}

/// `BookReview` -> `book_review`, `HTTPLog` -> `http_log`.
pub fn snake_case(name: &str) -> String {
    let name = name.strip_prefix("r#").unwrap_or(name);
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) => {
                    p.is_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
                }
                None => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
