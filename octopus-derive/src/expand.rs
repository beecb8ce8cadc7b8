//! Writes `impl octopus::Model` for a validated struct.
//!
//! Every field type is used through the trait its role needs (`Field`,
//! `KeyField`, `VersionField`, `TimestampField`), spanned at the type, so a
//! type that cannot play its role fails there, with that trait's message.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::ast::{Field, Input};
use crate::attr::Flag;
use crate::ctxt::Ctxt;
use crate::{fallback, valid};

/// The `impl Model`, or the errors and a stub impl.
pub fn derive(input: &DeriveInput) -> TokenStream {
    match try_expand(input) {
        Ok(expanded) => expanded,
        Err(error) => fallback::expand(input, error),
    }
}

fn try_expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::new();
    let Some(input) = Input::from_syn(&mut cx, input) else {
        return Err(cx
            .check()
            .expect_err("Input::from_syn failed without an error"));
    };
    valid::check(&mut cx, &input);
    cx.check()?;
    Ok(impl_model(&input))
}

fn impl_model(input: &Input<'_>) -> TokenStream {
    let ident = input.ident;
    let stored: Vec<&Field<'_>> = input
        .fields
        .iter()
        .filter(|f| f.attrs.skip.is_none())
        .collect();
    let schema = schema(input, &stored);
    let encode = encode(&stored);
    let decode = decode(input);
    let key = key_methods(&stored);
    let managed = managed_methods(input);
    quote! {
        const _: () = {
            use ::octopus::__private as __p;

            #[automatically_derived]
            impl ::octopus::Model for #ident {
                const SCHEMA: &'static __p::Schema = #schema;

                fn to_record(&self) -> __p::Result<__p::Record> {
                    ::core::result::Result::Ok(__p::Record::new(::std::vec![#(#encode),*]))
                }

                fn from_record(record: __p::Record) -> __p::Result<Self> {
                    let mut __values = __p::values(Self::SCHEMA, record)?;
                    ::core::result::Result::Ok(#ident {
                        #(#decode,)*
                    })
                }

                #key
                #managed
            }
        };
    }
}

/// The `'static` schema: table, columns in field order, and the index of
/// the key and of each managed column.
fn schema(input: &Input<'_>, stored: &[&Field<'_>]) -> TokenStream {
    let table = input.table();
    let index_of =
        |flag: fn(&Field<'_>) -> Flag| match stored.iter().position(|f| flag(f).is_some()) {
            Some(i) => quote!(::core::option::Option::Some(#i)),
            None => quote!(::core::option::Option::None),
        };
    let key = stored
        .iter()
        .position(|f| f.attrs.key.is_some())
        .unwrap_or(0);
    let version = index_of(|f| f.attrs.version);
    let created = index_of(|f| f.attrs.created_at);
    let updated = index_of(|f| f.attrs.updated_at);
    let columns = stored.iter().map(|f| {
        let name = f.column();
        let ty = f.ty;
        if f.attrs.json.is_some() {
            quote!(__p::Column::new(#name, __p::ColumnType::Json, false))
        } else {
            quote_spanned!(ty.span()=>
                __p::Column::new(#name, <#ty as __p::Field>::TYPE, <#ty as __p::Field>::NULLABLE)
            )
        }
    });
    quote! {
        &__p::Schema::new(#table, &[#(#columns),*], #key, #version, #created, #updated)
    }
}

/// Each stored field as a column value, in schema order.
fn encode(stored: &[&Field<'_>]) -> Vec<TokenStream> {
    let encode = |(i, f): (usize, &&Field<'_>)| {
        let name = f.ident;
        let ty = f.ty;
        if f.attrs.json.is_some() {
            quote_spanned!(ty.span()=> __p::encode_json::<#ty>(Self::SCHEMA, #i, &self.#name)?)
        } else {
            quote_spanned!(ty.span()=> <#ty as __p::Field>::encode(&self.#name))
        }
    };
    stored.iter().enumerate().map(encode).collect()
}

/// Each field's initializer: the next column value, or `Default` when
/// skipped.
fn decode(input: &Input<'_>) -> Vec<TokenStream> {
    let mut next_index = 0usize;
    let mut decode = |f: &Field<'_>| {
        let name = f.ident;
        let ty = f.ty;
        if f.attrs.skip.is_some() {
            return quote_spanned!(ty.span()=> #name: <#ty as ::core::default::Default>::default());
        }
        let i = next_index;
        next_index += 1;
        let value = quote!(__values.next().unwrap_or(__p::Value::Null));
        if f.attrs.json.is_some() {
            quote_spanned!(ty.span()=> #name: __p::decode_json::<#ty>(Self::SCHEMA, #i, #value)?)
        } else {
            quote_spanned!(ty.span()=> #name: __p::decoded(Self::SCHEMA, #i, <#ty as __p::Field>::decode(#value))?)
        }
    };
    input.fields.iter().map(&mut decode).collect()
}

/// `key`, `fill_key` and `clear_key`, through `KeyField`.
fn key_methods(stored: &[&Field<'_>]) -> TokenStream {
    let Some(key) = stored.iter().find(|f| f.attrs.key.is_some()) else {
        return TokenStream::new();
    };
    let name = key.ident;
    let ty = key.ty;
    let tr = quote_spanned!(ty.span()=> <#ty as __p::KeyField>);
    quote! {
        fn key(&self) -> __p::Key {
            #tr::to_key(&self.#name)
        }

        fn fill_key(&mut self) -> bool {
            if #tr::is_empty_key(&self.#name) {
                if let ::core::option::Option::Some(key) = #tr::generate() {
                    self.#name = key;
                    return true;
                }
            }
            false
        }

        fn clear_key(&mut self) {
            self.#name = ::core::default::Default::default();
        }
    }
}

/// The getter and setter of each managed field, through `VersionField` or
/// `TimestampField`: the store reads and writes these values itself.
fn managed_methods(input: &Input<'_>) -> TokenStream {
    let mut out = TokenStream::new();
    for f in &input.fields {
        let ty = f.ty;
        let version = quote_spanned!(ty.span()=> <#ty as __p::VersionField>);
        let millis = quote_spanned!(ty.span()=> <#ty as __p::TimestampField>);
        let roles = [
            (
                f.attrs.version.is_some(),
                "version",
                quote!(u64),
                &version,
                "u64",
            ),
            (
                f.attrs.created_at.is_some(),
                "created_at",
                quote!(i64),
                &millis,
                "millis",
            ),
            (
                f.attrs.updated_at.is_some(),
                "updated_at",
                quote!(i64),
                &millis,
                "millis",
            ),
        ];
        for (set, role, value, via, unit) in roles {
            if set {
                out.extend(accessors(f.ident, role, &value, via, unit));
            }
        }
    }
    out
}

/// `fn <role>(&self)` and `fn set_<role>(&mut self, ..)` over field `name`,
/// converting with `<via>::to_<unit>` and `<via>::from_<unit>`.
fn accessors(
    name: &syn::Ident, role: &str, value: &TokenStream, via: &TokenStream, unit: &str,
) -> TokenStream {
    let get = format_ident!("{role}");
    let set = format_ident!("set_{role}");
    let to = format_ident!("to_{unit}");
    let from = format_ident!("from_{unit}");
    quote! {
        fn #get(&self) -> ::core::option::Option<#value> {
            ::core::option::Option::Some(#via::#to(&self.#name))
        }
        fn #set(&mut self, value: #value) {
            self.#name = #via::#from(value);
        }
    }
}
