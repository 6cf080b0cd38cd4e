//! Compile-fail proofs of the token rules: GIL-bound values cannot escape
//! `with_gil`, move to another thread, be used inside `allow_threads`, or be
//! mixed between two `with_gil` calls.

#[test]
fn token_rules_are_enforced_at_compile_time() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
