//! The built-in connectors, compiled by this crate's build script from
//! `connectors/` and embedded in the binary.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The path of a guest component built alongside the engine, including
/// test-only guests such as `testkit` that are not built in.
pub fn guest_component(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("WEFT_GUEST_DIR")).join(format!("weft_connector_{name}.wasm"))
}
