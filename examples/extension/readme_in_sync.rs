//! The README's "Extending: your own VM provider" section shows the Tart backend; this keeps
//! that copy identical to `tart.rs`, which CI compiles.

/// The `TartVms` struct and its `VmBackend` impl, as `tart.rs` has them.
fn tart_impl() -> String {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tart.rs")).expect("tart.rs");
    let start = source.find("/// Runner VMs cloned").expect("the TartVms doc comment in tart.rs");
    let impl_at = source.find("impl VmBackend for TartVms").expect("the VmBackend impl in tart.rs");
    let end = impl_at + source[impl_at..].find("\n}\n").expect("the end of the impl") + 3;
    source[start..end].to_owned()
}

#[test]
fn readme_shows_the_tart_backend_that_ci_compiles() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README.md");
    let shown = format!("```rust\n{}```", tart_impl());
    assert!(
        readme.contains(&shown),
        "README.md's Tart backend differs from examples/extension/tart.rs; copy this block:\n{shown}"
    );
}
