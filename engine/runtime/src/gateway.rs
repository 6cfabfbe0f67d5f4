//! The plugin gateway: one connector action called directly, outside any
//! run, through the same sandbox, grants, egress policy and plan as a step.

use std::time::Instant;

use serde_json::Value;
use weft_host::{CallContext, CallError, CallLogs, ConnectorInfo, Invocation};
use weft_store::Metered;
use weft_workflows::limits;

use crate::{Engine, Error, Result, now_ms};

/// A direct call, as asked.
#[derive(Debug, Clone)]
pub struct DirectCall<'a> {
    /// The connector's name.
    pub connector: &'a str,
    /// Its version; the newest the tenant has when `None`.
    pub version: Option<&'a str>,
    /// The action.
    pub action: &'a str,
    /// The action's input.
    pub input: &'a Value,
    /// What the connector gets as the call's idempotency key (a new one when
    /// `None`): an upstream that honours it does the work once per key.
    pub idempotency_key: Option<&'a str>,
}

/// How a direct call went.
#[derive(Debug)]
pub struct DirectOutcome {
    /// The build that ran.
    pub connector: ConnectorInfo,
    /// The call's id, in the connector's context (as a run id) and in logs.
    pub call_id: String,
    /// The output, or why there is none.
    pub result: Result<Value, CallError>,
    /// What the connector logged.
    pub logs: CallLogs,
    /// The time spent in the call, in microseconds.
    pub wasm_us: i64,
}

impl Engine {
    /// Calls one connector action for `tenant`, outside any run: the input
    /// is checked against the action's schema and the value limits, the
    /// tenant's plan must allow the connector and have steps left, and the
    /// call counts in the tenant's usage as a step. A failure of the call
    /// itself is in the outcome; an `Err` means it was not made.
    pub async fn call_directly(&self, tenant: &str, call: DirectCall<'_>) -> Result<DirectOutcome> {
        let DirectCall { connector, version, action, input, idempotency_key } = call;
        let resolve = || self.host.resolve(tenant, connector, version);
        let info = match resolve() {
            Some(info) => info,
            None => {
                // Installed through another process, perhaps.
                self.load_installed(tenant).await?;
                resolve().ok_or_else(|| Error::UnknownConnector(connector.to_string()))?
            }
        };
        let Some(spec) = info.manifest.actions.iter().find(|a| a.name == action) else {
            let actions = info.manifest.actions.iter().map(|a| a.name.clone()).collect();
            return Err(Error::UnknownAction { connector: info.key(), action: action.to_string(), actions });
        };
        limits::check_value(input, "the action's input", limits::MAX_VALUE_BYTES)?;
        match weft_workflows::schema_errors(&spec.input_schema, input) {
            Ok(errors) if errors.is_empty() => {}
            Ok(errors) => {
                return Err(Error::InvalidActionInput(
                    errors.into_iter().map(|(path, message)| format!("{path}: {message}")).collect(),
                ));
            }
            // The manifest was checked when the component was loaded.
            Err(message) => return Err(Error::InvalidActionInput(vec![message])),
        }
        let call_id = format!("call-{}", uuid::Uuid::now_v7());
        let ctx = CallContext {
            tenant: tenant.to_string(),
            run_id: call_id.clone(),
            step_id: action.to_string(),
            attempt: 1,
            idempotency_key: idempotency_key.map_or_else(|| call_id.clone(), str::to_string),
        };
        let (invocation, metered) = self.call_connector(&info.digest, &ctx, connector, action, input, None).await?;
        // The call was made: its outcome is the caller's even when the
        // database fails to count it.
        if let Err(e) = self.store.meter(tenant, now_ms(), metered).await {
            tracing::error!(tenant, call_id, error = %e, "a direct call's usage was not recorded");
        }
        let wasm_us = metered.wasm_us;
        Ok(DirectOutcome { connector: info, call_id, result: invocation.result, logs: invocation.logs, wasm_us })
    }

    /// One connector call, as a step makes it and as a direct call does:
    /// the tenant's plan must allow it (and counts it), then the host
    /// invokes it and its time goes to the metrics and, as the returned
    /// [`Metered`], to the tenant's usage. `Err`: the call was not made.
    pub(crate) async fn call_connector(
        &self,
        digest: &str,
        ctx: &CallContext,
        connector: &str,
        action: &str,
        input: &Value,
        timeout: Option<std::time::Duration>,
    ) -> Result<(Invocation, Metered)> {
        self.admit_call(&ctx.tenant, connector).await?;
        let started = Instant::now();
        let invocation = self.host.invoke_logged(digest, ctx, action, input, timeout).await;
        let elapsed = started.elapsed();
        crate::telemetry::step_attempt(&ctx.tenant, connector, invocation.result.is_ok(), elapsed.as_secs_f64());
        Ok((invocation, Metered { steps: 1, wasm_us: elapsed.as_micros() as i64 }))
    }
}
