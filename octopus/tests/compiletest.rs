//! Every misuse of `#[derive(Model)]` and of a registry is a compile error
//! pointing at the offending token; each case pins its message.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
