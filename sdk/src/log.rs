//! Structured log lines that go into the step's timeline.

use crate::__private::bindings::weft::connector::log::{Level, log};

/// Logs fine detail.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Logs detail for debugging.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs normal progress.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs something odd that did not stop the action.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs a failure.
pub fn error(message: &str) {
    log(Level::Error, message);
}
