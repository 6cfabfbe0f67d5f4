//! The `weft:connector/log` import: a connector's log lines become
//! `tracing` events (target `connector.log`) inside the call's
//! `connector.invoke` span, which carries the tenant, run, step and attempt.
//! A call's lines are capped in number and length.

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::weft::connector::log::{self, Host, Level};
use crate::bindings::weft::connector::types;
use crate::call::CallState;

pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    log::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
}

/// Lines a call may log before further lines are dropped.
const MAX_LINES: usize = 1000;
/// Bytes one line may hold before it is cut.
const MAX_LINE_BYTES: usize = 4096;

impl Host for CallState {
    fn log(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        if self.log_lines >= MAX_LINES {
            return Ok(());
        }
        self.log_lines += 1;
        let mut message = self.redactor.text(std::mem::take(&mut message));
        if message.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        tracing::debug!(target: "connector.log", level, %message);
        Ok(())
    }
}

impl types::Host for CallState {}
