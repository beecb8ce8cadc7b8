//! Writes `impl octopus::Model` for a validated struct.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::ast::{Field, Input};
use crate::attr::Ctxt;
use crate::{fallback, valid};

pub fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let parsed = Input::from_syn(&mut cx, input);
    if let Some(parsed) = &parsed {
        valid::check(&mut cx, parsed);
    }
    match (cx.check(), parsed) {
        (Ok(()), Some(parsed)) => impl_model(&parsed),
        (Err(e), _) => {
            let mut out = e.to_compile_error();
            out.extend(fallback::stub(input));
            out
        }
        (Ok(()), None) => fallback::stub(input),
    }
}

fn impl_model(input: &Input<'_>) -> TokenStream {
    let ident = input.ident;
    let table = input.table();
    let stored: Vec<&Field<'_>> = input
        .fields
        .iter()
        .filter(|f| f.attrs.skip.is_none())
        .collect();
    let index_of = |pick: &dyn Fn(&Field<'_>) -> bool| stored.iter().position(|f| pick(f));
    let key_index = index_of(&|f| f.attrs.key.is_some()).unwrap_or(0);
    let opt = |i: Option<usize>| match i {
        Some(i) => quote!(::core::option::Option::Some(#i)),
        None => quote!(::core::option::Option::None),
    };
    let version_index = opt(index_of(&|f| f.attrs.version.is_some()));
    let created_index = opt(index_of(&|f| f.attrs.created_at.is_some()));
    let updated_index = opt(index_of(&|f| f.attrs.updated_at.is_some()));

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

    let encode = stored.iter().enumerate().map(|(i, f)| {
        let name = f.ident;
        let ty = f.ty;
        if f.attrs.json.is_some() {
            quote_spanned!(ty.span()=> __p::encode_json::<#ty>(Self::SCHEMA, #i, &self.#name)?)
        } else {
            quote_spanned!(ty.span()=> <#ty as __p::Field>::encode(&self.#name))
        }
    });

    let mut next_index = 0usize;
    let decode = input.fields.iter().map(|f| {
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
    });

    let key = stored[key_index];
    let key_name = key.ident;
    let key_ty = key.ty;
    let key_trait = quote_spanned!(key_ty.span()=> <#key_ty as __p::KeyField>);

    let version = input
        .fields
        .iter()
        .find(|f| f.attrs.version.is_some())
        .map(|f| {
            let name = f.ident;
            let ty = f.ty;
            let tr = quote_spanned!(ty.span()=> <#ty as __p::VersionField>);
            quote! {
                fn version(&self) -> ::core::option::Option<u64> {
                    ::core::option::Option::Some(#tr::to_u64(&self.#name))
                }
                fn set_version(&mut self, version: u64) {
                    self.#name = #tr::from_u64(version);
                }
            }
        });
    let created = input
        .fields
        .iter()
        .find(|f| f.attrs.created_at.is_some())
        .map(|f| {
            let name = f.ident;
            quote! {
                fn created_at(&self) -> ::core::option::Option<i64> {
                    ::core::option::Option::Some(self.#name)
                }
                fn set_created_at(&mut self, millis: i64) {
                    self.#name = millis;
                }
            }
        });
    let updated = input
        .fields
        .iter()
        .find(|f| f.attrs.updated_at.is_some())
        .map(|f| {
            let name = f.ident;
            quote! {
                fn updated_at(&self) -> ::core::option::Option<i64> {
                    ::core::option::Option::Some(self.#name)
                }
                fn set_updated_at(&mut self, millis: i64) {
                    self.#name = millis;
                }
            }
        });

    quote! {
        const _: () = {
            use ::octopus::__private as __p;

            #[automatically_derived]
            impl ::octopus::Model for #ident {
                const SCHEMA: &'static __p::Schema = &__p::Schema::new(
                    #table,
                    &[#(#columns),*],
                    #key_index,
                    #version_index,
                    #created_index,
                    #updated_index,
                );

                fn key(&self) -> __p::Key {
                    #key_trait::to_key(&self.#key_name)
                }

                fn to_record(&self) -> __p::Result<__p::Record> {
                    ::core::result::Result::Ok(__p::Record::new(::std::vec![#(#encode),*]))
                }

                fn from_record(record: __p::Record) -> __p::Result<Self> {
                    let mut __values = __p::values(Self::SCHEMA, record)?;
                    ::core::result::Result::Ok(#ident {
                        #(#decode,)*
                    })
                }

                fn fill_key(&mut self) -> bool {
                    if #key_trait::is_empty_key(&self.#key_name) {
                        if let ::core::option::Option::Some(key) = #key_trait::generate() {
                            self.#key_name = key;
                            return true;
                        }
                    }
                    false
                }

                fn clear_key(&mut self) {
                    self.#key_name = ::core::default::Default::default();
                }

                #version
                #created
                #updated
            }
        };
    }
}
