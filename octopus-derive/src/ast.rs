//! The derive's view of the input: a struct with named fields and their
//! parsed attributes, each node keeping the syn node it came from for spans.

use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, FieldsNamed, Generics, Ident, Type};

use crate::attr::{self, ContainerAttrs, FieldAttrs};
use crate::ctxt::Ctxt;

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
    /// Reads a struct with named fields, or reports what the input is
    /// instead (`None`, with the error in `cx`).
    pub fn from_syn(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let attrs = attr::container(cx, &input.attrs);
        check_generics(cx, &input.generics);
        let fields = named_fields(cx, input)?
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

/// A model's schema is a `'static` constant, the same for every
/// instantiation, so a model has no type or lifetime parameters.
fn check_generics(cx: &mut Ctxt, generics: &Generics) {
    if let Some(param) = generics.params.first() {
        cx.error(
            param.span(),
            "#[derive(Model)] does not support generic structs: a model's schema is fixed at compile time",
        );
    } else if let Some(clause) = &generics.where_clause {
        cx.error(
            clause.where_token.span(),
            "#[derive(Model)] does not support where clauses",
        );
    }
}

/// The fields of a struct with named fields; anything else is an error,
/// since fields are columns and columns need names.
fn named_fields<'a>(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<&'a FieldsNamed> {
    let (span, message) = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => return Some(named),
            Fields::Unnamed(unnamed) => (
                unnamed.span(),
                "#[derive(Model)] needs named fields: a tuple struct's fields have no column names",
            ),
            Fields::Unit => (
                input.ident.span(),
                "#[derive(Model)] needs a struct with named fields, one of them the key",
            ),
        },
        Data::Enum(data) => (
            data.enum_token.span(),
            "#[derive(Model)] supports only structs with named fields, not enums",
        ),
        Data::Union(data) => (
            data.union_token.span(),
            "#[derive(Model)] supports only structs with named fields, not unions",
        ),
    };
    cx.error(span, message);
    None
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

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn table_names_default_to_snake_case() {
        assert_eq!(snake_case("Book"), "book");
        assert_eq!(snake_case("BookReview"), "book_review");
        assert_eq!(snake_case("HTTPLog"), "http_log");
        assert_eq!(snake_case("Log2Entry"), "log2_entry");
        assert_eq!(snake_case("r#Type"), "type");
    }
}
