//! A local stand-in for a provider's API: it records each request (method,
//! path and query, headers, body) and answers with what the test's responder
//! says, in the provider's documented shapes. The host routes the provider's
//! hostname here, after the egress check.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use weft_host::{CallContext, Host, HostConfig, MemorySecrets};

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {:?}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The form-encoded body as pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        url_pairs(&self.text())
    }

    /// The query string as pairs.
    pub fn query(&self) -> Vec<(String, String)> {
        url_pairs(self.target.split_once('?').map(|(_, q)| q).unwrap_or(""))
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

fn url_pairs(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes()).into_owned().collect()
}

/// What the stand-in answers: a status, a JSON body and extra headers.
pub struct Reply {
    pub status: u16,
    /// `None`: an empty body.
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply { status, body: Some(body), headers: Vec::new() }
    }

    /// A status with an empty body.
    pub fn empty(status: u16) -> Reply {
        Reply { status, body: None, headers: Vec::new() }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

type Responder = dyn Fn(&Seen) -> Reply + Send + Sync;

pub struct StandIn {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    pub async fn start(respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> StandIn {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Responder> = Arc::new(respond);
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (log, respond) = (log.clone(), respond.clone());
            async move {
                let request = Seen {
                    method: method.to_string(),
                    target: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                    headers,
                    body: body.to_vec(),
                };
                let reply = respond(&request);
                log.lock().unwrap().push(request);
                let status = StatusCode::from_u16(reply.status).unwrap();
                let mut response: Response = match reply.body {
                    Some(body) => (status, axum::Json(body)).into_response(),
                    None => status.into_response(),
                };
                for (name, value) in reply.headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { base, seen }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// A host with the built-in connectors, `secrets`, and `hosts` routed here.
    pub async fn host(&self, hosts: &[&str], secrets: MemorySecrets) -> Host {
        // Compiled components are cached across tests and runs.
        let config = HostConfig {
            cache_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache")),
            ..HostConfig::default()
        };
        let mut host = Host::new(config).unwrap().with_secrets(Arc::new(secrets));
        for name in hosts {
            host = host.with_route(name, &self.base).unwrap();
        }
        host.install_builtins().await.unwrap();
        host
    }
}

/// A call context for step `step` of run `run-1`.
pub fn ctx(step: &str) -> CallContext {
    CallContext {
        tenant: "default".into(),
        run_id: "run-1".into(),
        step_id: step.into(),
        attempt: 1,
        idempotency_key: format!("run-1:{step}:0"),
    }
}
