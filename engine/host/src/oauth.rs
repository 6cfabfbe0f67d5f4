//! The `weft:connector/oauth` import: access tokens for the providers a
//! connector's manifest declares, and the sources tokens come from.

use std::collections::HashMap;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::weft::connector::oauth;
use crate::bindings::weft::connector::types::Error as WitError;
use crate::call::CallState;
use crate::refusal::Refusal;
use crate::secrets::{BoxFuture, SourceError, chain};

pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    oauth::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
}

/// Where access tokens come from. The host asks only for providers that the
/// calling connector declared. Until end users can connect accounts, a host
/// has no source ([`NoTokens`]); `weft connector test --oauth-token` gives
/// tokens by hand ([`MemoryTokens`]).
pub trait TokenSource: Send + Sync + 'static {
    /// A current access token for `provider` in `tenant`, or `None` when
    /// there is none. An `Err` is a failure of the source itself and fails
    /// the call as transient.
    fn access_token<'a>(
        &'a self,
        tenant: &'a str,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SourceError>>;

    /// Why there is no token and how to get one: the end of the error a
    /// connector receives when [`TokenSource::access_token`] has none.
    fn missing(&self, tenant: &str, provider: &str) -> String {
        format!("there is no `{provider}` token for tenant `{tenant}`")
    }
}

/// No tokens at all: OAuth connections are not built yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTokens;

impl TokenSource for NoTokens {
    fn access_token<'a>(
        &'a self,
        _tenant: &'a str,
        _provider: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SourceError>> {
        Box::pin(async { Ok(None) })
    }

    fn missing(&self, tenant: &str, provider: &str) -> String {
        format!(
            "OAuth is not configured on this Weft host, so there is no `{provider}` token for tenant `{tenant}` (to try \
             a connector with a token of your own: weft connector test --oauth-token {provider}=TOKEN)"
        )
    }
}

/// Tokens held in memory by provider, the same for every tenant: for
/// `weft connector test` and tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryTokens {
    tokens: HashMap<String, String>,
}

impl MemoryTokens {
    /// No tokens.
    pub fn new() -> MemoryTokens {
        MemoryTokens::default()
    }

    /// Adds or replaces the token of `provider`.
    pub fn with(mut self, provider: impl Into<String>, token: impl Into<String>) -> MemoryTokens {
        self.tokens.insert(provider.into(), token.into());
        self
    }
}

impl TokenSource for MemoryTokens {
    fn access_token<'a>(
        &'a self,
        _tenant: &'a str,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SourceError>> {
        Box::pin(async move { Ok(self.tokens.get(provider).cloned()) })
    }

    fn missing(&self, _tenant: &str, provider: &str) -> String {
        format!("no `{provider}` token was given (--oauth-token {provider}=TOKEN)")
    }
}

impl oauth::Host for CallState {
    async fn access_token(&mut self, provider: String) -> wasmtime::Result<Result<String, WitError>> {
        if !self.grants.oauth.contains(&provider) {
            return Ok(Err(self.refuse(Refusal::OAuth(provider))));
        }
        let g = &self.grants;
        match g.tokens.access_token(&g.tenant, &provider).await {
            Ok(Some(token)) => {
                // A token is a credential: it never reaches a log or an output.
                self.redactor.add(&token);
                Ok(Ok(token))
            }
            Ok(None) => Ok(Err(WitError::Unauthorized(g.tokens.missing(&g.tenant, &provider)))),
            Err(e) => {
                tracing::warn!(target: "weft::oauth", tenant = %g.tenant, connector = %g.connector, %provider,
                    error = %chain(e.as_ref()), "the token source failed");
                Ok(Err(WitError::Transient(format!("the token source failed for `{provider}`: {}", chain(e.as_ref())))))
            }
        }
    }
}
