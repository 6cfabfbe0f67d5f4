//! Benchmark W2: what a connector call costs through the host, next to the
//! same call made with wasmtime alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::imports::{Egress, Refusals};
use crate::{CallContext, CallState, Error, Host, Result, wit_context};

/// Calls timed one by one, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct CallTimes {
    /// Through [`Host::invoke`]: a fresh store with limits, epoch deadline and
    /// grants, instantiation from the `InstancePre` in the pooling allocator,
    /// the call, and JSON in and out.
    pub host: Vec<f64>,
    /// The floor: a fresh store with an empty context, instantiation from the
    /// same `InstancePre`, and the call; no limits, no deadline timer, no
    /// JSON parsing.
    pub bare: Vec<f64>,
}

/// Calls per batch; the two ways alternate batch by batch, so drift in the
/// machine's speed lands on both.
const BATCH: usize = 100;

impl Host {
    /// Times `calls` calls of `action` with `input` each way (after a
    /// warm-up of one batch each). Fails if either way fails once.
    pub async fn time_calls(&self, digest: &str, action: &str, input: &Value, calls: usize) -> Result<CallTimes> {
        let loaded = self
            .connectors
            .lock()
            .expect("connectors lock")
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::UnknownDigest(digest.to_string()))?;
        let pre = self.pre(&loaded).await?;
        let ctx = CallContext {
            tenant: "default".into(),
            run_id: "bench".into(),
            step_id: "call".into(),
            attempt: 1,
            idempotency_key: "bench:call:0".into(),
        };
        let context = wit_context(&ctx);
        let input_text = input.to_string();
        let failed = |way: &str, e: String| Error::Engine(format!("the {way} call failed: {e}"));

        let mut times = CallTimes::default();
        let mut round = 0;
        while times.host.len() < calls {
            let n = if round == 0 { BATCH } else { BATCH.min(calls - times.host.len()) };
            for _ in 0..n {
                let start = Instant::now();
                self.invoke(digest, &ctx, action, input, None).await.map_err(|e| failed("host", e.to_string()))?;
                if round > 0 {
                    times.host.push(micros(start.elapsed()));
                }
            }
            for _ in 0..n {
                let start = Instant::now();
                let mut store = Store::new(&self.engine, self.bare_state());
                store.set_epoch_deadline(u64::MAX / 2);
                let instance = pre.instantiate_async(&mut store).await.map_err(|e| failed("bare", e.to_string()))?;
                instance
                    .call_invoke(&mut store, &context, action, &input_text)
                    .await
                    .map_err(|e| failed("bare", e.to_string()))?
                    .map_err(|e| failed("bare", format!("{e:?}")))?;
                drop(store);
                if round > 0 {
                    times.bare.push(micros(start.elapsed()));
                }
            }
            round += 1;
        }
        Ok(times)
    }

    /// The least state the linker's imports need.
    fn bare_state(&self) -> CallState {
        let refusals = Refusals::default();
        CallState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: Default::default(),
            logs: Vec::new(),
            grants: self.no_grants("(bench)"),
            egress: Egress {
                allowed: Arc::new([]),
                policy: None,
                max_body: 0,
                refusals: refusals.clone(),
                routes: self.routes.clone(),
            },
            refusals,
        }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
