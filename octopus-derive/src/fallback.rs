//! On error, a stub impl so the user sees the derive's error rather than a
//! cascade of "`Model` is not implemented" errors wherever the type is used.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

pub fn stub(input: &DeriveInput) -> TokenStream {
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let ident = &input.ident;
    quote! {
        const _: () = {
            use ::octopus::__private as __p;

            #[automatically_derived]
            impl ::octopus::Model for #ident {
                const SCHEMA: &'static __p::Schema = &__p::Schema::new(
                    "invalid",
                    &[__p::Column::new("invalid", __p::ColumnType::I64, false)],
                    0,
                    ::core::option::Option::None,
                    ::core::option::Option::None,
                    ::core::option::Option::None,
                );
                fn key(&self) -> __p::Key {
                    ::core::unreachable!()
                }
                fn to_record(&self) -> __p::Result<__p::Record> {
                    ::core::unreachable!()
                }
                fn from_record(_: __p::Record) -> __p::Result<Self> {
                    ::core::unreachable!()
                }
            }
        };
    }
}
