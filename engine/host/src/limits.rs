//! What one call may use, and the store limiter that enforces it and
//! records which limit stopped the call, so that a trap is classified from
//! what the limiter saw rather than from the error's text.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one call when the step sets none.
    pub timeout: Duration,
    /// Linear memory a call may grow to.
    pub memory_bytes: usize,
    /// Largest input (JSON text) a call accepts.
    pub max_input_bytes: usize,
    /// Largest output (JSON text) a call may return.
    pub max_output_bytes: usize,
    /// Largest body of one outgoing HTTP request.
    pub max_request_body_bytes: usize,
    /// Host resources a call may hold at once (wasi:http requests,
    /// responses, header fields, bodies and streams, secret handles): each
    /// lives in host memory, outside the guest's memory limit.
    pub max_host_resources: usize,
    /// Bytes one set of HTTP header fields may hold (in memory).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            memory_bytes: crate::config::DEFAULT_MEMORY_BYTES,
            max_input_bytes: 4 << 20,
            max_output_bytes: 4 << 20,
            max_request_body_bytes: 16 << 20,
            max_host_resources: 1000,
            max_header_bytes: 64 << 10,
        }
    }
}

/// A limit that stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// A linear memory would have grown past the call's memory limit.
    Memory,
    /// A table would have grown past what the engine allows.
    Table,
}

/// The store's [`ResourceLimiter`]: it refuses growth past the limits (which
/// traps the guest) and remembers the first limit it enforced.
pub(crate) struct Limiter {
    memory_bytes: usize,
    exceeded: Option<Exceeded>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Limiter {
        Limiter { memory_bytes: limits.memory_bytes, exceeded: None }
    }

    /// The first limit enforced during the call, if any.
    pub(crate) fn exceeded(&self) -> Option<Exceeded> {
        self.exceeded
    }

    fn record(&mut self, exceeded: Exceeded) -> wasmtime::Error {
        self.exceeded.get_or_insert(exceeded);
        wasmtime::format_err!("{exceeded:?} limit reached")
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes || maximum.is_some_and(|max| desired > max) {
            return Err(self.record(Exceeded::Memory));
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The allocator could not give the memory even under the limit (the
        // pool's slot is smaller, say): the guest is still out of memory.
        self.exceeded.get_or_insert(Exceeded::Memory);
        Err(error)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Err(self.record(Exceeded::Table));
        }
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.exceeded.get_or_insert(Exceeded::Table);
        Err(error)
    }
}
