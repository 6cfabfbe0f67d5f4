//! W2: what one connector call costs through the host, next to the same
//! call made with wasmtime alone on the same engine configuration.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use weft_host::{CallContext, Host};
use weft_store::DEFAULT_TENANT;

use crate::percentile;

mod wit {
    wasmtime::component::bindgen!({
        path: "../../connectors-wit/wit",
        world: "connector",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// Calls timed one by one, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct CallTimes {
    /// Through [`Host::invoke`]: a fresh store with limits, epoch deadline and
    /// grants, instantiation in the pooling allocator, the call, and JSON in
    /// and out.
    pub host: Vec<f64>,
    /// The floor: a fresh store with an empty context, instantiation from an
    /// `InstancePre` of the same component on an engine with the host's
    /// configuration, and the call; no limits, no deadline timer, no JSON
    /// parsing. Weft's own imports are linked as stubs that refuse (the
    /// action calls none of them).
    pub bare: Vec<f64>,
}

/// Calls per batch; the two ways alternate batch by batch, so drift in the
/// machine's speed lands on both.
const BATCH: usize = 100;

/// The least state the linked imports need.
struct Bare {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Bare {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: wasmtime_wasi_http::default_hooks() }
    }
}

/// Weft's own imports, each refusing: the floor's action calls none of them.
fn add_refusing_imports(linker: &mut Linker<Bare>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    use wit::weft::connector::{log, oauth, secrets, types};
    types::add_to_linker::<Bare, HasSelf<Bare>>(linker, |s| s)?;
    log::add_to_linker::<Bare, HasSelf<Bare>>(linker, |s| s)?;
    secrets::add_to_linker::<Bare, HasSelf<Bare>>(linker, |s| s)?;
    oauth::add_to_linker::<Bare, HasSelf<Bare>>(linker, |s| s)
}

const REFUSED: &str = "the benchmark floor grants no secrets and no tokens";

impl wit::weft::connector::types::Host for Bare {}

impl wit::weft::connector::log::Host for Bare {
    fn log(&mut self, _level: wit::weft::connector::log::Level, _message: String) {}
}

impl wit::weft::connector::secrets::Host for Bare {
    fn get(
        &mut self,
        _name: String,
    ) -> Result<Resource<wit::weft::connector::secrets::Secret>, wit::weft::connector::types::Error> {
        Err(wit::weft::connector::types::Error::Unauthorized(REFUSED.into()))
    }
}

impl wit::weft::connector::secrets::HostSecret for Bare {
    fn name(&mut self, _secret: Resource<wit::weft::connector::secrets::Secret>) -> String {
        String::new()
    }

    fn reveal(
        &mut self,
        _secret: Resource<wit::weft::connector::secrets::Secret>,
    ) -> Result<String, wit::weft::connector::types::Error> {
        Err(wit::weft::connector::types::Error::Unauthorized(REFUSED.into()))
    }

    fn drop(&mut self, _secret: Resource<wit::weft::connector::secrets::Secret>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl wit::weft::connector::oauth::Host for Bare {
    fn access_token(&mut self, _provider: String) -> Result<String, wit::weft::connector::types::Error> {
        Err(wit::weft::connector::types::Error::Unauthorized(REFUSED.into()))
    }
}

/// Times `calls` calls of `action` with `input` of `component` (which must
/// be installed on `host`) each way, after a warm-up batch each. Fails if
/// either way fails once.
pub async fn time_calls(
    host: &Host,
    component: &[u8],
    action: &str,
    input: &Value,
    calls: usize,
) -> anyhow::Result<CallTimes> {
    let digest = weft_host::digest_of(component);
    anyhow::ensure!(host.is_installed(DEFAULT_TENANT, &digest), "the component to time is not installed on the host");
    let engine = Engine::new(&weft_host::engine_config(&host.limits()))?;
    let component = Component::new(&engine, component)
        .map_err(|e| anyhow::anyhow!("compiling the component for the floor: {e:#}"))?;
    let mut linker = Linker::<Bare>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    add_refusing_imports(&mut linker)?;
    let pre = wit::ConnectorPre::new(linker.instantiate_pre(&component)?)?;

    let ctx = CallContext {
        tenant: DEFAULT_TENANT.into(),
        run_id: "bench".into(),
        step_id: "call".into(),
        attempt: 1,
        idempotency_key: "bench:call:0".into(),
    };
    let context = wit::weft::connector::types::Context {
        tenant: ctx.tenant.clone(),
        run_id: ctx.run_id.clone(),
        step_id: ctx.step_id.clone(),
        attempt: ctx.attempt,
        idempotency_key: ctx.idempotency_key.clone(),
    };
    let input_text = input.to_string();

    let mut times = CallTimes::default();
    let mut round = 0;
    while times.host.len() < calls {
        let n = if round == 0 { BATCH } else { BATCH.min(calls - times.host.len()) };
        for _ in 0..n {
            let start = Instant::now();
            host.invoke(&digest, &ctx, action, input, None).await.context("the host call failed")?;
            if round > 0 {
                times.host.push(micros(start.elapsed()));
            }
        }
        for _ in 0..n {
            let start = Instant::now();
            let state =
                Bare { wasi: WasiCtx::builder().build(), http: WasiHttpCtx::new(), table: ResourceTable::new() };
            let mut store = Store::new(&engine, state);
            store.set_epoch_deadline(u64::MAX / 2);
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| anyhow::anyhow!("the bare instantiation failed: {e:#}"))?;
            instance
                .call_invoke(&mut store, &context, action, &input_text)
                .await
                .map_err(|e| anyhow::anyhow!("the bare call failed: {e:#}"))?
                .map_err(|e| anyhow::anyhow!("the bare call failed: {e:?}"))?;
            drop(store);
            if round > 0 {
                times.bare.push(micros(start.elapsed()));
            }
        }
        round += 1;
    }
    Ok(times)
}

/// W2: `calls` calls of the built-in `transform/echo` through `host` and
/// bare, printed as a Markdown table next to the targets.
pub async fn run(host: &Host, calls: usize) -> anyhow::Result<()> {
    let (_, transform) = weft_host::BUILTINS
        .iter()
        .find(|(name, _)| *name == "transform")
        .context("the built-in transform connector is missing")?;
    let input = json!({ "order": 42, "items": ["a", "b"] });
    eprintln!("W2: {calls} calls each way, alternating in batches of {BATCH}…");
    let times = time_calls(host, transform, "echo", &input, calls).await?;
    let stats = |samples: &[f64]| {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        (percentile(&sorted, 0.5), percentile(&sorted, 0.99))
    };
    let (host_median, host_p99) = stats(&times.host);
    let (bare_median, bare_p99) = stats(&times.bare);
    println!("| call | median | p99 | median / bare | target |");
    println!("|---|---|---|---|---|");
    println!("| bare wasmtime instantiate+call (floor) | {bare_median:.1} µs | {bare_p99:.1} µs | 1.00x | - |");
    println!(
        "| weft host invoke (`transform/echo`) | {host_median:.1} µs | {host_p99:.1} µs | {:.2}x | ≤ 20 µs and ≤ 2x |",
        host_median / bare_median
    );
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
