//! Errors gathered across the whole input, so one build shows them all.

use std::fmt::Display;
use std::thread;

use proc_macro2::Span;

/// Collects errors while the input is read and checked, then reports them
/// together ([`Ctxt::check`]).
///
/// Dropping a `Ctxt` without calling `check` panics (as serde_derive's
/// does): an error pushed and then forgotten would let an invalid model
/// compile, so forgetting is a bug in the derive, caught by its own tests.
pub struct Ctxt {
    /// `None` once checked.
    errors: Option<Vec<syn::Error>>,
}

impl Ctxt {
    /// An empty context, which must still be `check`ed.
    pub fn new() -> Self {
        Ctxt {
            errors: Some(Vec::new()),
        }
    }

    /// An error at one token (an attribute's name, a field's name).
    pub fn error(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// An error syn reported, such as a malformed attribute value.
    pub fn push(&mut self, error: syn::Error) {
        self.errors
            .as_mut()
            .expect("Ctxt used after check")
            .push(error);
    }

    /// Every error gathered, combined into one, or `Ok` if there were none.
    pub fn check(mut self) -> syn::Result<()> {
        let errors = self.errors.take().expect("Ctxt checked twice");
        let mut errors = errors.into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            combined.combine(error);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if self.errors.is_some() && !thread::panicking() {
            panic!("Ctxt dropped without check(): its errors would be lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_without_errors_is_ok() {
        assert!(Ctxt::new().check().is_ok());
    }

    #[test]
    fn check_reports_every_error_in_order() {
        let mut cx = Ctxt::new();
        cx.error(Span::call_site(), "first");
        cx.push(syn::Error::new(Span::call_site(), "second"));
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    #[should_panic(expected = "dropped without check()")]
    fn dropping_unchecked_panics() {
        let mut cx = Ctxt::new();
        cx.error(Span::call_site(), "lost");
    }
}
