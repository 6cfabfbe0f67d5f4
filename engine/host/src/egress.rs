//! The egress gate in front of wasi:http: a request leaves only when its
//! host is in the connector's egress list and in the tenant's policy, and
//! its body fits the limit; `outgoing` then checks the addresses the host
//! resolves to. Routes send a provider's hostname to a local stand-in.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use wasmtime_wasi_http::WasiHttpHooks;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode as HttpErrorCode;

use crate::outgoing::{self, AddressPolicy};
use crate::refusal::{Refusal, Refusals};

/// The gate in front of wasi:http: a request leaves only when its host is in
/// the connector's egress list.
pub(crate) struct Egress {
    pub allowed: Arc<[String]>,
    /// The tenant's own allow-list, when it has one; a host must pass both.
    pub policy: Option<(String, Arc<[String]>)>,
    /// The largest request body that may leave.
    pub max_body: usize,
    /// Where a refused host or body is recorded (the call's own).
    pub refusals: Refusals,
    /// Hosts whose requests go to another server (see `Host::with_route`).
    pub routes: Arc<HashMap<String, http::uri::Uri>>,
    /// The addresses connections may go to.
    pub addresses: AddressPolicy,
}

/// Whether `host` matches one of `patterns`: an exact name, `*.domain` (any
/// subdomain, not the domain itself) or `*` (any host). Case-insensitive; a
/// trailing dot is ignored.
pub(crate) fn host_allowed(patterns: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    patterns.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" {
            return true;
        }
        match pattern.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == pattern,
        }
    })
}

impl Egress {
    /// The refusal for `host`, if the manifest or the tenant's policy forbids it.
    pub(crate) fn check(&self, host: &str) -> Option<Refusal> {
        if !host_allowed(&self.allowed, host) {
            return Some(Refusal::Egress { host: host.to_string(), allowed: self.allowed.to_vec() });
        }
        match &self.policy {
            Some((tenant, policy)) if !host_allowed(policy, host) => {
                Some(Refusal::TenantPolicy { host: host.to_string(), tenant: tenant.clone(), allowed: policy.to_vec() })
            }
            _ => None,
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for Egress {
    /// Names the way a connection failed, where wasmtime's default calls
    /// every failure a protocol error.
    fn p2_error_from_hyper(&mut self, err: &hyper::Error) -> HttpErrorCode {
        tracing::warn!(target: "weft::egress", error = ?err, "an outgoing request failed");
        let io = std::error::Error::source(err).and_then(|e| e.downcast_ref::<std::io::Error>());
        let reset = io.is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        });
        if err.is_timeout() {
            HttpErrorCode::ConnectionReadTimeout
        } else if reset || err.is_incomplete_message() || err.is_closed() {
            HttpErrorCode::ConnectionTerminated
        } else {
            HttpErrorCode::HttpProtocolError
        }
    }

    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let host = request.uri().host().unwrap_or_default().to_string();
        if let Some(refusal) = self.check(&host) {
            tracing::warn!(target: "weft::egress", %host, "request refused before it left");
            self.refusals.record(refusal);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            self.refusals.record(Refusal::RequestBody(self.max_body));
            return Box::new(async move { Err(wasmtime_wasi_http::Error::HttpRequestBodySize(declared)) });
        }
        let mut request = request;
        let routed = self.routes.get(&host.to_ascii_lowercase());
        if let Some(base) = routed {
            let mut parts = request.uri().clone().into_parts();
            parts.scheme = base.scheme().cloned();
            parts.authority = base.authority().cloned();
            match http::uri::Uri::from_parts(parts) {
                Ok(uri) => *request.uri_mut() = uri,
                Err(e) => {
                    tracing::warn!(target: "weft::egress", %host, error = %e, "cannot route the request");
                    return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestUriInvalid) });
                }
            }
        }
        // A streamed body is cut off where it passes the limit.
        let (max, refusals) = (self.max_body, self.refusals.clone());
        let request = request.map(|body| {
            use http_body_util::BodyExt;
            http_body_util::Limited::new(body, max)
                .map_err(move |e| match e.downcast::<wasmtime_wasi_http::Error>() {
                    Ok(inner) => *inner,
                    Err(_) => {
                        refusals.record(Refusal::RequestBody(max));
                        wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max as u64))
                    }
                })
                .boxed_unsync()
        });
        // The operator chose a route's address; any other is checked.
        let (policy, check, refusals) = (self.addresses, routed.is_none(), self.refusals.clone());
        drop(fut);
        Box::new(outgoing::send(request, options, policy, check, refusals))
    }
}
