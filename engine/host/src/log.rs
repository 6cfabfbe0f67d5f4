//! The `weft:connector/log` import: a connector's log lines, kept with the
//! call so that the engine can put them in the step's timeline.

use crate::CallState;
use crate::bindings::weft::connector::log::{Host, Level};

/// Lines a call may log before further lines are dropped.
const MAX_LINES: usize = 1000;
/// Bytes one line may hold before it is cut.
const MAX_LINE_BYTES: usize = 4096;

/// One line a connector logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `trace` … `error`.
    pub level: &'static str,
    /// The text, cut at 4 KiB.
    pub message: String,
}

impl Host for CallState {
    fn log(&mut self, level: Level, mut message: String) {
        if self.logs.len() >= MAX_LINES {
            return;
        }
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
        self.logs.push(LogLine { level, message });
    }
}

impl crate::bindings::weft::connector::types::Host for CallState {}
