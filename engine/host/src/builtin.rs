//! The built-in connectors, compiled by this crate's build script from
//! `connectors/` and embedded in the binary, both as components and
//! precompiled for the engine's default configuration.

use wasmtime::Engine;
use wasmtime::component::Component;

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// What the build script made of a built-in connector besides embedding it.
pub(crate) struct Prebuilt {
    /// The digest of its component bytes.
    pub digest: &'static str,
    /// The component, compiled for the connector engine's default
    /// configuration.
    pub compiled: &'static [u8],
}

/// The path of a guest component built alongside the engine, including
/// test-only guests such as `testkit` that are not built in.
pub fn guest_component(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("WEFT_GUEST_DIR")).join(format!("weft_connector_{name}.wasm"))
}

/// `compiled`, one of the build script's precompiled components, loaded
/// into `engine`; `None` when `engine` cannot run it (another wasmtime
/// configuration, or a machine without the build machine's CPU features),
/// and the component is compiled instead.
#[allow(unsafe_code)]
pub(crate) fn load_precompiled(engine: &Engine, compiled: &'static [u8]) -> Option<Component> {
    // SAFETY: `compiled` was produced by `Engine::precompile_component` of
    // this wasmtime version, in this crate's build script, and is embedded
    // in the binary unchanged; wasmtime checks its version, configuration
    // and CPU features before using it, and returns an error on a mismatch.
    match unsafe { Component::deserialize(engine, compiled) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::debug!(error = %e, "a precompiled built-in does not fit this engine; compiling it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_precompiled_component_for_another_configuration_is_compiled_instead() {
        let connectors = Engine::new(&crate::config::connectors(crate::config::DEFAULT_MEMORY_BYTES)).unwrap();
        let sandbox = Engine::new(&crate::config::template_sandbox()).unwrap();
        // The sandbox was compiled with fuel, which the connectors' engine lacks.
        assert!(load_precompiled(&connectors, TEMPLATE_SANDBOX_PRECOMPILED).is_none());
        assert!(load_precompiled(&sandbox, TEMPLATE_SANDBOX_PRECOMPILED).is_some());
        assert!(PREBUILT.iter().all(|built| load_precompiled(&connectors, built.compiled).is_some()));
    }

    #[test]
    fn the_prebuilt_digests_are_the_builtins_digests() {
        let digests: Vec<String> = BUILTINS.iter().map(|(_, bytes)| crate::digest_of(bytes)).collect();
        assert_eq!(PREBUILT.iter().map(|built| built.digest).collect::<Vec<_>>(), digests);
    }
}
