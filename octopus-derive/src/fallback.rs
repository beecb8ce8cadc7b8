//! On error, the errors plus a stub impl (as thiserror-impl does): with
//! `Model` implemented, the user's other code that uses the type compiles,
//! so they see the derive's errors rather than a cascade of "`Model` is not
//! implemented" wherever the type is used.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, parse_quote};

/// `error` as `compile_error!`s, then a stub `impl Model` whose methods
/// are never called (the build fails).
pub fn expand(input: &DeriveInput, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    let ident = &input.ident;
    // `Model` needs `Send + Sync + 'static`; a generic model (itself an
    // error) gets them as bounds rather than as a second error here.
    let mut generics = input.generics.clone();
    if !generics.params.is_empty() {
        let (_, ty_generics, _) = input.generics.split_for_impl();
        generics
            .make_where_clause()
            .predicates
            .push(parse_quote!(#ident #ty_generics: ::core::marker::Send + ::core::marker::Sync + 'static));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        #error

        const _: () = {
            use ::octopus::__private as __p;

            #[automatically_derived]
            impl #impl_generics ::octopus::Model for #ident #ty_generics #where_clause {
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
