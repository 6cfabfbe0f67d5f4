//! Weft's benchmark workloads and the floors they are measured against, in
//! the same run on the same machine:
//!
//! - [`w1`]: ten sequential steps, each a trivial wasm action whose input
//!   references the previous step's output, next to the single-row commit
//!   floor of the same database ([`floor`]);
//! - [`w2`]: one connector call through the host, next to a bare wasmtime
//!   instantiate and call of the same component;
//! - [`w3`]: the whole `weft` process running the hello example with an
//!   empty and a warm cache, next to `weft --version`;
//! - [`w4`]: 100,000 runs asleep at once on one `weft worker`, waking
//!   across a minute: memory, lag, and a takeover;
//! - [`w5`]: runs started over HTTP by 64 clients with an API key, next to
//!   the commit floor.
//!
//! `weft bench` prints these as the Markdown tables kept in
//! `docs/BENCHMARKS.md`. Nothing here is linked into the engine's
//! production crates.

pub mod floor;
pub mod w1;
pub mod w2;
pub mod w3;
pub mod w4;
pub mod w5;
pub mod workloads;

/// The `p`-quantile (0.0 to 1.0) of sorted samples; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let samples = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&samples, 0.5), 3.0);
        assert_eq!(percentile(&samples, 0.9), 5.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
