//! Engine configuration: one wasmtime engine with the pooling allocator and
//! epoch interruption, the linker with every import a connector may use, and
//! the thread that advances the epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use crate::call::CallState;
use crate::{Error, Limits, Result};

/// How often the epoch advances; deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime configuration every connector runs under: the component
/// model, epoch interruption, and a pooling allocator sized for `limits`.
/// Public so that a benchmark's floor runs on exactly the same settings.
pub fn engine_config(limits: &Limits) -> Config {
    crate::config::connectors(limits.memory_bytes)
}

/// The linker: WASI p2 (no files, no env), wasi:http, and Weft's imports.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(Error::Engine)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(Error::Engine)?;
    crate::log::add_to_linker(&mut linker).map_err(Error::Engine)?;
    crate::secrets::add_to_linker(&mut linker).map_err(Error::Engine)?;
    crate::oauth::add_to_linker(&mut linker).map_err(Error::Engine)?;
    Ok(linker)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(Error::Thread)?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
