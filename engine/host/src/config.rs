//! The wasmtime configurations connectors and the template sandbox run
//! under. The build script includes this file too and precompiles the
//! built-ins and the sandbox with exactly these settings, so that a first
//! run loads them instead of compiling them; that is why only `wasmtime`
//! may be used here.

use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The linear memory a call may grow to by default.
pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;

/// Connectors: the component model, epoch interruption, and a pooling
/// allocator whose memories hold `memory_bytes`.
pub fn connectors(memory_bytes: usize) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(256)
        .total_core_instances(1024)
        .total_memories(256)
        .total_tables(512)
        .max_memories_per_component(4)
        .max_core_instances_per_component(64)
        .max_tables_per_component(8)
        .max_memory_size(memory_bytes.max(1 << 20))
        // Reset small memories and tables in place rather than with
        // madvise: each madvise costs a TLB shootdown on every core, which
        // dominated CPU time with many calls in flight.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        // Connectors are synchronous p2 components. Without the
        // component-model-async state, dropping a store does not build an
        // error (and a backtrace) per call.
        .concurrency_support(false)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// The template sandbox: the component model and fuel, so that an
/// evaluation that runs out does so at the same instruction on every replay.
pub fn template_sandbox() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true).concurrency_support(false).consume_fuel(true);
    config
}
