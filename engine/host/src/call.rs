//! One call: a fresh store with its limits and deadline, the grants the
//! connector's manifest gives it, the instantiation and the `invoke` export,
//! and the classification of how it failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::Instrument;
use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use weft_workflows::{ErrorKind, limits};

use crate::bindings::weft::connector::types as wit;
use crate::egress::Egress;
use crate::limits::{Exceeded, Limiter};
use crate::log::CallLogs;
use crate::oauth::TokenSource;
use crate::redact::Redactor;
use crate::refusal::{Refusal, Refusals};
use crate::secrets::{AuditSink, SecretSource};
use crate::{Error, Host};

/// Who is calling: passed to the connector as its `context`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    /// Tenant id.
    pub tenant: String,
    /// Run id.
    pub run_id: String,
    /// Step id.
    pub step_id: String,
    /// Attempt number.
    pub attempt: u32,
    /// Idempotency key.
    pub idempotency_key: String,
}

/// Why a call failed, as the engine's retry policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct CallError {
    /// The kind.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
    /// For rate limits: how long the upstream asked us to wait.
    pub retry_after_ms: Option<u64>,
}

impl CallError {
    /// An error of `kind`. [`Host::invoke`] cuts a message longer than
    /// [`limits::MAX_ERROR_MESSAGE_BYTES`] there (after redacting it), so
    /// that no connector can journal megabytes per attempt.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CallError { kind, message: message.into(), retry_after_ms: None }
    }
}

impl From<wit::Error> for CallError {
    fn from(error: wit::Error) -> CallError {
        match error {
            wit::Error::InvalidInput(m) => CallError::new(ErrorKind::InvalidInput, m),
            wit::Error::Unauthorized(m) => CallError::new(ErrorKind::Unauthorized, m),
            wit::Error::RateLimited(r) => {
                CallError { retry_after_ms: r.retry_after_ms, ..CallError::new(ErrorKind::RateLimited, r.message) }
            }
            wit::Error::Transient(m) => CallError::new(ErrorKind::Transient, m),
            wit::Error::Fatal(m) => CallError::new(ErrorKind::Fatal, m),
        }
    }
}

/// What a call may reach: from the manifest, plus who is calling.
pub(crate) struct Grants {
    pub connector: String,
    pub tenant: String,
    pub run_id: String,
    pub step_id: String,
    pub secrets: Arc<[String]>,
    pub oauth: Arc<[String]>,
    pub source: Arc<dyn SecretSource>,
    pub tokens: Arc<dyn TokenSource>,
    pub audit: Arc<dyn AuditSink>,
}

impl Grants {
    /// Grants for a call that may use no secret and no OAuth provider.
    pub(crate) fn none(connector: &str, host: &Host) -> Grants {
        Grants {
            connector: connector.into(),
            tenant: String::new(),
            run_id: String::new(),
            step_id: String::new(),
            secrets: Arc::new([]),
            oauth: Arc::new([]),
            source: host.secrets.clone(),
            tokens: host.tokens.clone(),
            audit: host.audit.clone(),
        }
    }
}

/// A call's result, with what the connector logged.
#[derive(Debug)]
pub struct Invocation {
    /// The output, or why there is none.
    pub result: Result<Value, CallError>,
    /// The first lines the connector logged.
    pub logs: CallLogs,
}

/// What a call's store holds.
pub(crate) struct CallState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    /// Lines logged so far.
    pub log_lines: usize,
    /// The lines kept with the call's result.
    pub logs: CallLogs,
    pub grants: Grants,
    pub egress: Egress,
    pub refusals: Refusals,
    /// The secret values this call revealed, kept out of what it returns.
    pub redactor: Redactor,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.egress }
    }
}

impl CallState {
    /// Records a refused capability and returns the guest's error for it.
    pub(crate) fn refuse(&mut self, refusal: Refusal) -> wit::Error {
        let message = refusal.describe(&self.grants.connector);
        self.refusals.record(refusal);
        wit::Error::Fatal(message)
    }
}

impl Host {
    pub(crate) fn new_store(&self, deadline: Duration, grants: Grants, egress: Arc<[String]>) -> Store<CallState> {
        let refusals = Refusals::default();
        let policy = self.egress_policies.get(&grants.tenant).map(|hosts| (grants.tenant.clone(), hosts.clone()));
        let state = CallState {
            grants,
            egress: Egress {
                allowed: egress,
                policy,
                max_body: self.limits.max_request_body_bytes,
                refusals: refusals.clone(),
                routes: self.routes.clone(),
                addresses: self.addresses,
            },
            refusals,
            wasi: WasiCtx::builder().build(),
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(self.limits.max_header_bytes);
                http
            },
            table: {
                // Host resources count against the call: a guest that
                // creates them in a loop traps instead of growing the host.
                let mut table = ResourceTable::new();
                table.set_max_capacity(self.limits.max_host_resources);
                table
            },
            limiter: Limiter::new(&self.limits),
            log_lines: 0,
            logs: CallLogs::default(),
            redactor: Redactor::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // At every epoch tick the guest gives its thread back to tokio, so a
        // call that spins holds neither a worker thread nor its run's driver
        // (which must still see a cancel and renew its lease); past the
        // deadline it traps.
        let until = Instant::now() + deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= until { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        store
    }

    /// Calls `action` of the connector with `digest`, which must serve
    /// `ctx.tenant`. `timeout` overrides the default deadline. Every
    /// failure, including traps and limits, comes back as a [`CallError`].
    pub async fn invoke(
        &self,
        digest: &str,
        ctx: &CallContext,
        action: &str,
        input: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value, CallError> {
        self.invoke_logged(digest, ctx, action, input, timeout).await.result
    }

    /// [`Host::invoke`], returning with the result the first lines the
    /// connector logged (see [`CallLogs`]).
    pub async fn invoke_logged(
        &self,
        digest: &str,
        ctx: &CallContext,
        action: &str,
        input: &Value,
        timeout: Option<Duration>,
    ) -> Invocation {
        let mut logs = CallLogs::default();
        let result = async {
            let loaded = self.loaded(&ctx.tenant, digest).ok_or_else(|| {
                let unknown = Error::UnknownDigest { digest: digest.to_string(), tenant: ctx.tenant.clone() };
                CallError::new(ErrorKind::Fatal, unknown.to_string())
            })?;
            let name = loaded.info.key();
            let input_text = input.to_string();
            if input_text.len() > self.limits.max_input_bytes {
                return Err(CallError::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "the input is {} bytes, over the request limit of {} bytes",
                        input_text.len(),
                        self.limits.max_input_bytes
                    ),
                ));
            }
            let pre = self.pre(&loaded).await.map_err(|e| CallError::new(ErrorKind::Fatal, format!("{name}: {e}")))?;
            let deadline = timeout.unwrap_or(self.limits.timeout);
            let grants = Grants {
                connector: name.clone(),
                tenant: ctx.tenant.clone(),
                run_id: ctx.run_id.clone(),
                step_id: ctx.step_id.clone(),
                secrets: loaded.secrets.clone(),
                oauth: loaded.oauth.clone(),
                source: self.secrets.clone(),
                tokens: self.tokens.clone(),
                audit: self.audit.clone(),
            };
            let mut store = self.new_store(deadline, grants, loaded.egress.clone());
            let context = wit_context(ctx);
            let call = async {
                let instance = pre.instantiate_async(&mut store).await?;
                instance.call_invoke(&mut store, &context, action, &input_text).await
            };
            let span = tracing::debug_span!(
                "connector.invoke",
                tenant = %ctx.tenant,
                run_id = %ctx.run_id,
                step_id = %ctx.step_id,
                attempt = ctx.attempt,
                connector = %name,
                action,
            );
            let outcome = tokio::time::timeout(deadline, call).instrument(span).await;
            let result = self.settle(&name, action, deadline, &store, outcome);
            // Whatever the call says goes through its redactor: a value it was
            // given as a secret is never journaled, logged or shown. A message
            // is cut after it is redacted, so no part of a secret survives the cut.
            // Log lines were redacted as they were logged: a secret is
            // revealed (and known to the redactor) before it can be logged.
            let state = store.data_mut();
            logs = std::mem::take(&mut state.logs);
            let redactor = &state.redactor;
            match result {
                Ok(output) => Ok(redactor.value(output)),
                Err(error) => {
                    let message =
                        limits::truncate_message(redactor.text(error.message), limits::MAX_ERROR_MESSAGE_BYTES);
                    Err(CallError { message, ..error })
                }
            }
        }
        .await;
        Invocation { result, logs }
    }

    /// The result of a call as the engine sees it: a trap or deadline named,
    /// a refused capability explained, the output checked against its limits.
    fn settle(
        &self,
        name: &str,
        action: &str,
        deadline: Duration,
        store: &Store<CallState>,
        outcome: Result<wasmtime::Result<Result<String, wit::Error>>, tokio::time::error::Elapsed>,
    ) -> Result<Value, CallError> {
        let result = match outcome {
            Err(_) => return Err(deadline_error(name, action, deadline)),
            Ok(Err(trap)) => return Err(self.classify_trap(name, action, deadline, store.data(), &trap)),
            Ok(Ok(result)) => result,
        };
        // A refused capability explains a failure better than the guest can.
        if let (Err(_), Some(refusal)) = (&result, store.data().refusals.first()) {
            return Err(CallError::new(ErrorKind::Fatal, refusal.describe(name)));
        }
        let output = result.map_err(CallError::from)?;
        if output.len() > self.limits.max_output_bytes {
            return Err(CallError::new(
                ErrorKind::Fatal,
                format!(
                    "{name} `{action}` returned {} bytes, over the output limit of {} bytes",
                    output.len(),
                    self.limits.max_output_bytes
                ),
            ));
        }
        let output: Value = serde_json::from_str(&output).map_err(|e| {
            CallError::new(ErrorKind::Fatal, format!("{name} `{action}` returned output that is not JSON: {e}"))
        })?;
        if let Some(path) = limits::too_deep_at(&output, limits::MAX_DEPTH) {
            return Err(CallError::new(
                ErrorKind::Fatal,
                format!(
                    "{name} `{action}` returned output that nests deeper than the limit of {} levels (at {path})",
                    limits::MAX_DEPTH
                ),
            ));
        }
        Ok(output)
    }

    /// Names why a call trapped: its deadline, a limit its store's limiter
    /// enforced, the pooling allocator being full, or the guest's own trap.
    fn classify_trap(
        &self,
        name: &str,
        action: &str,
        deadline: Duration,
        state: &CallState,
        error: &wasmtime::Error,
    ) -> CallError {
        if matches!(error.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
            return deadline_error(name, action, deadline);
        }
        match state.limiter.exceeded() {
            Some(Exceeded::Memory) => {
                return CallError::new(
                    ErrorKind::Trap,
                    format!("{name} `{action}` exceeded its memory limit of {} MiB", self.limits.memory_bytes >> 20),
                );
            }
            Some(Exceeded::Table) => {
                return CallError::new(ErrorKind::Trap, format!("{name} `{action}` exceeded its table limit"));
            }
            None => {}
        }
        let table_full = error.chain().any(|cause| {
            matches!(cause.downcast_ref::<wasmtime::component::ResourceTableError>(), Some(ResourceTableError::Full))
        });
        if table_full {
            return CallError::new(
                ErrorKind::Trap,
                format!(
                    "{name} `{action}` exceeded its limit of {} host resources held at once \
                     (HTTP requests, responses, headers, bodies, streams)",
                    self.limits.max_host_resources
                ),
            );
        }
        let headers_full = error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<wasmtime_wasi_http::FieldMapError>(),
                Some(
                    wasmtime_wasi_http::FieldMapError::TotalSizeTooBig
                        | wasmtime_wasi_http::FieldMapError::TooManyFields
                )
            )
        });
        if headers_full {
            return CallError::new(
                ErrorKind::Trap,
                format!(
                    "{name} `{action}` exceeded its limit of {} bytes for one set of HTTP header fields",
                    self.limits.max_header_bytes
                ),
            );
        }
        if let Some(full) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            return CallError::new(
                ErrorKind::Transient,
                format!("{name} `{action}`: the host is at its instance limit: {full}"),
            );
        }
        // The innermost cause says what happened (the outer ones add the
        // wasm backtrace).
        let cause = error.chain().last().map(|c| c.to_string()).unwrap_or_default();
        let first = cause.lines().next().filter(|l| !l.is_empty()).unwrap_or("trap");
        CallError::new(ErrorKind::Trap, format!("{name} `{action}` trapped: {first}"))
    }
}

/// The guest's view of who is calling.
pub(crate) fn wit_context(ctx: &CallContext) -> wit::Context {
    wit::Context {
        tenant: ctx.tenant.clone(),
        run_id: ctx.run_id.clone(),
        step_id: ctx.step_id.clone(),
        attempt: ctx.attempt,
        idempotency_key: ctx.idempotency_key.clone(),
    }
}

/// The error for a call that outran its deadline, whether the epoch or the
/// timer caught it.
fn deadline_error(name: &str, action: &str, deadline: Duration) -> CallError {
    CallError::new(ErrorKind::Timeout, format!("{name} `{action}` ran past its deadline of {}", humanize(deadline)))
}

fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}
