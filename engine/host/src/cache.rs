//! The on-disk cache of compiled components and their manifests, keyed by the
//! component's digest, the wasmtime version and the engine configuration, so
//! that a second process start does not recompile.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::{Error, Result};

/// A directory of compiled artifacts that only Weft writes.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    engine_key: String,
}

impl Cache {
    /// A cache in `dir` for artifacts of `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> Cache {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // The compatibility hash covers the wasmtime version and every setting
        // that changes compiled code.
        let engine_key = format!("engine-{:016x}", hasher.finish());
        Cache { dir: dir.into(), engine_key }
    }

    fn path(&self, digest: &str, extension: &str) -> PathBuf {
        let digest = digest.trim_start_matches("sha256:");
        self.dir.join(&self.engine_key).join(format!("{digest}.{extension}"))
    }

    /// The compiled component for `digest`, compiling and storing it on a miss.
    pub fn component(&self, engine: &Engine, digest: &str, bytes: &[u8]) -> Result<Component> {
        let path = self.path(digest, "cwasm");
        if path.is_file() {
            match load(engine, &path) {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding an unreadable compiled component")
                }
            }
        }
        let compiled = compile(engine, digest, bytes)?;
        write_atomically(&path, &compiled);
        let component = unsafe_deserialize(engine, &compiled)?;
        Ok(component)
    }

    /// The cached manifest (JSON) for `digest`, if any.
    pub fn manifest(&self, digest: &str) -> Option<String> {
        std::fs::read_to_string(self.path(digest, "manifest.json")).ok()
    }

    /// Stores the manifest (JSON) for `digest`.
    pub fn put_manifest(&self, digest: &str, json: &str) {
        write_atomically(&self.path(digest, "manifest.json"), json.as_bytes());
    }
}

/// A component: its build-time `precompiled` form when `engine` can load
/// that, else from `cache` (compiled and stored on a miss), else compiled.
pub(crate) fn load_or_compile(
    engine: &Engine,
    cache: Option<&Cache>,
    digest: &str,
    bytes: &[u8],
    precompiled: Option<&'static [u8]>,
) -> Result<Component> {
    if let Some(component) = precompiled.and_then(|compiled| crate::builtin::load_precompiled(engine, compiled)) {
        return Ok(component);
    }
    match cache {
        Some(cache) => cache.component(engine, digest, bytes),
        None => {
            compiling(digest, bytes);
            Component::new(engine, bytes).map_err(Error::Compile)
        }
    }
}

/// Compiles a component for the cache.
fn compile(engine: &Engine, digest: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    compiling(digest, bytes);
    engine.precompile_component(bytes).map_err(Error::Compile)
}

/// Logs a compilation, which takes a noticeable time (about 0.1 s for a
/// small connector, on two cores).
fn compiling(digest: &str, bytes: &[u8]) {
    tracing::debug!(target: "weft::compile", %digest, bytes = bytes.len(), "compiling a component");
}

/// Writes via a temporary file and a rename, so that a reader never sees half
/// a file. A cache that cannot be written only costs speed.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let Some(parent) = path.parent() else { return };
    // Unique per process and per write, so that concurrent writers of one
    // artifact never share a temporary file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = parent.join(format!(".{}.{n}.{name}", std::process::id()));
    let written = std::fs::create_dir_all(parent)
        .and_then(|()| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the component cache");
    }
}

#[allow(unsafe_code)]
fn load(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was produced by `Engine::precompile_component` of this
    // wasmtime version and configuration (both are in the directory name), in
    // a directory that only Weft writes, and was renamed into place whole.
    unsafe { Component::deserialize_file(engine, path) }
}

#[allow(unsafe_code)]
fn unsafe_deserialize(engine: &Engine, compiled: &[u8]) -> Result<Component> {
    // SAFETY: `compiled` was just produced by `precompile_component` on this engine.
    unsafe { Component::deserialize(engine, compiled) }.map_err(Error::Compile)
}
