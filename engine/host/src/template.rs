//! The template sandbox: workflow templates that are not bounded by what
//! they read (loops, `*`, calls, most filters) are evaluated in a
//! WebAssembly component, `connectors/template_sandbox`, which runs
//! `weft-workflows`' own evaluator. Each evaluation gets a fresh instance
//! with a memory cap and a fuel budget. minijinja's fuel charges estimates
//! of the work and bytes a template spends; the sandbox's memory cap and
//! instruction budget hold whatever those estimates say. Both are
//! deterministic: a template that runs out does so on every replay.
//!
//! The sandbox has its own synchronous engine: templates are rendered where
//! the core decides, which is synchronous code.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use weft_workflows::expr::{self, Mode};

use crate::limits::{Exceeded, Limiter};
use crate::{Cache, Limits, digest_of};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../connectors/template_sandbox/wit",
        world: "sandbox",
    });
}

/// The linear memory one evaluation may grow to: room for a scope of a few
/// values at the size limit, converted to minijinja's values.
pub const TEMPLATE_MEMORY_BYTES: usize = 128 << 20;

/// The WebAssembly fuel (instructions) one evaluation may burn, about ten
/// seconds of CPU. minijinja's own budget of operations usually stops a
/// long loop first.
pub const TEMPLATE_WASM_FUEL: u64 = 20_000_000_000;

/// The process's template sandbox, compiled on first use (or loaded from the
/// cache of compiled components).
pub struct TemplateSandbox {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    compiled: OnceLock<Result<bindings::SandboxPre<State>, String>>,
}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl TemplateSandbox {
    /// A sandbox whose compiled component is cached in `cache_dir`.
    pub fn new(cache_dir: Option<PathBuf>) -> crate::Result<TemplateSandbox> {
        let engine = Engine::new(&crate::config::template_sandbox()).map_err(crate::Error::Engine)?;
        Ok(TemplateSandbox { engine, cache_dir, compiled: OnceLock::new() })
    }

    /// Installs a sandbox as the process's (see [`expr::install_sandbox`]).
    /// The first installation stays.
    pub fn install(cache_dir: Option<PathBuf>) -> crate::Result<()> {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        if INSTALLED.get().is_none() {
            expr::install_sandbox(Arc::new(TemplateSandbox::new(cache_dir)?));
            let _ = INSTALLED.set(());
        }
        Ok(())
    }

    fn compiled(&self) -> Result<&bindings::SandboxPre<State>, String> {
        let compiled = self.compiled.get_or_init(|| {
            let bytes = crate::builtin::TEMPLATE_SANDBOX;
            let cache = self.cache_dir.as_ref().map(|dir| Cache::new(dir, &self.engine));
            let precompiled = Some(crate::builtin::TEMPLATE_SANDBOX_PRECOMPILED);
            let component =
                crate::cache::load_or_compile(&self.engine, cache.as_ref(), &digest_of(bytes), bytes, precompiled);
            let component = component
                .map_err(|e| format!("the template sandbox does not compile: {}", crate::secrets::chain(&e)))?;
            let link = |e: wasmtime::Error| format!("the template sandbox does not link: {e:#}");
            let mut linker = Linker::new(&self.engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link)?;
            let pre = linker.instantiate_pre(&component).map_err(link)?;
            bindings::SandboxPre::new(pre).map_err(link)
        });
        compiled.as_ref().map_err(Clone::clone)
    }

    fn store(&self) -> Store<State> {
        let limits = Limits { memory_bytes: TEMPLATE_MEMORY_BYTES, ..Limits::default() };
        let state = State {
            // No files, no environment, no network: only what std needs to start.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(&limits),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // The store starts without fuel; this cannot fail with fuel enabled.
        let _ = store.set_fuel(TEMPLATE_WASM_FUEL);
        store
    }

    /// Runs `call` in a fresh instance, naming the limit that stopped it.
    fn run<T>(
        &self,
        call: impl FnOnce(&bindings::Sandbox, &mut Store<State>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, String> {
        let pre = self.compiled()?;
        let mut store = self.store();
        let result = pre.instantiate(&mut store).and_then(|sandbox| call(&sandbox, &mut store));
        match result {
            Ok(outcome) => outcome,
            Err(trap) => Err(match (store.data().limiter.exceeded(), trap.downcast_ref::<wasmtime::Trap>()) {
                (Some(Exceeded::Memory), _) => {
                    format!("the template needs more than its memory limit of {} MiB", TEMPLATE_MEMORY_BYTES >> 20)
                }
                (_, Some(wasmtime::Trap::OutOfFuel)) => {
                    format!("the template ran past its budget of {TEMPLATE_WASM_FUEL} WebAssembly instructions")
                }
                _ => format!("the template sandbox stopped: {trap:#}"),
            }),
        }
    }
}

impl expr::Sandbox for TemplateSandbox {
    fn evaluate(&self, mode: Mode, source: &str, scope: &str, limit: usize) -> Result<String, String> {
        let mode = match mode {
            Mode::Expression => bindings::Mode::Expression,
            Mode::Condition => bindings::Mode::Condition,
            Mode::Text => bindings::Mode::Text,
        };
        let cap = u64::try_from(limit).unwrap_or(u64::MAX);
        let result = self.run(|sandbox, store| sandbox.call_evaluate(store, mode, source, scope, cap))?;
        // The guest is held to the cap it was given.
        if result.len() > limit {
            return Err(format!("the result is over the size limit of {limit} bytes"));
        }
        Ok(result)
    }

    fn references(&self, source: &str, bare_expression: bool) -> Result<Vec<String>, String> {
        self.run(|sandbox, store| sandbox.call_references(store, source, bare_expression))
    }
}
