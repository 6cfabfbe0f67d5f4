//! Refusals: a capability the host withheld during a call (a host outside
//! the egress lists, an undeclared secret or OAuth provider, a request body
//! over its limit). When the call then fails, the step's error names the
//! refusal instead of whatever the guest made of it.

use std::sync::{Arc, Mutex};

/// A capability the host refused during a call. When the call then fails, the
/// step's error names the limit instead of whatever the guest made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Egress { host: String, allowed: Vec<String> },
    TenantPolicy { host: String, tenant: String, allowed: Vec<String> },
    Address { host: String, ip: std::net::IpAddr, why: &'static str },
    RequestBody(usize),
    Secret(String),
    OAuth(String),
}

/// The first capability refused during a call, shared by the call's imports
/// and its HTTP gate (a streamed body is cut off on another task).
#[derive(Debug, Clone, Default)]
pub(crate) struct Refusals(Arc<Mutex<Option<Refusal>>>);

impl Refusals {
    /// Records a refusal; the first one stands.
    pub(crate) fn record(&self, refusal: Refusal) {
        self.0.lock().expect("refusals lock").get_or_insert(refusal);
    }

    /// The first refusal, if any.
    pub(crate) fn first(&self) -> Option<Refusal> {
        self.0.lock().expect("refusals lock").clone()
    }
}

impl Refusal {
    pub(crate) fn describe(&self, connector: &str) -> String {
        match self {
            Refusal::Egress { host, allowed } => format!(
                "egress refused: {connector} may not connect to `{host}`; its manifest allows {}",
                if allowed.is_empty() { "no hosts".to_string() } else { format!("only {}", allowed.join(", ")) }
            ),
            Refusal::TenantPolicy { host, tenant, allowed } => format!(
                "egress refused: tenant `{tenant}`'s policy does not allow `{host}` (asked for by {connector}); it allows {}",
                if allowed.is_empty() { "no hosts".to_string() } else { format!("only {}", allowed.join(", ")) }
            ),
            Refusal::Address { host, ip, why } => format!(
                "egress refused: `{host}` (asked for by {connector}) resolves to {ip}, {why}, which this host's \
                 address policy does not let connectors reach"
            ),
            Refusal::RequestBody(limit) => {
                format!("request body refused: {connector} sent more than the limit of {limit} bytes")
            }
            Refusal::Secret(name) => {
                format!("secret refused: {connector} asked for `{name}`, which its manifest does not declare")
            }
            Refusal::OAuth(provider) => {
                format!("OAuth refused: {connector} asked for `{provider}`, which its manifest does not declare")
            }
        }
    }
}
