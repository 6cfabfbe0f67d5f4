//! The `weft:connector/log` import. A connector's log lines become
//! `tracing` events (target `connector.log`) inside the call's
//! `connector.invoke` span, which carries the tenant, run, step and attempt.
//! The first of them are also kept with the call's result ([`CallLogs`]), so
//! that the engine can journal them with the attempt. Every line is redacted
//! and cut to size.

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
/// Lines kept with a call's result: the rest reach `tracing` only.
pub const MAX_KEPT_LINES: usize = 50;
/// Bytes of messages kept with a call's result.
pub const MAX_KEPT_BYTES: usize = 16 << 10;

/// One line a connector logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The message, redacted and cut to [`MAX_LINE_BYTES`].
    pub message: String,
}

/// The lines a connector logged during one call that are kept with its
/// result: the first [`MAX_KEPT_LINES`], within [`MAX_KEPT_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallLogs {
    /// The lines kept, in order.
    pub lines: Vec<LogLine>,
    /// How many more lines the call logged.
    pub dropped: usize,
    bytes: usize,
}

impl CallLogs {
    fn keep(&mut self, line: LogLine) {
        if self.lines.len() < MAX_KEPT_LINES && self.bytes + line.message.len() <= MAX_KEPT_BYTES {
            self.bytes += line.message.len();
            self.lines.push(line);
        } else {
            self.dropped += 1;
        }
    }
}

impl Host for CallState {
    fn log(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        if self.log_lines >= MAX_LINES {
            self.logs.dropped += 1;
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
        self.logs.keep(LogLine { level, message });
        Ok(())
    }
}

impl types::Host for CallState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_lines_stop_at_their_count_and_their_bytes() {
        let mut logs = CallLogs::default();
        for i in 0..MAX_KEPT_LINES + 3 {
            logs.keep(LogLine { level: "info", message: format!("line {i}") });
        }
        assert_eq!((logs.lines.len(), logs.dropped), (MAX_KEPT_LINES, 3));

        let mut logs = CallLogs::default();
        let long = "x".repeat(MAX_KEPT_BYTES / 2);
        for _ in 0..3 {
            logs.keep(LogLine { level: "warn", message: long.clone() });
        }
        logs.keep(LogLine { level: "warn", message: "short".into() });
        assert_eq!((logs.lines.len(), logs.dropped), (2, 2), "a line that does not fit is dropped whole");
    }
}
