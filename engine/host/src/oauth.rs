//! The `weft:connector/oauth` import: access tokens for the providers a
//! connector's manifest declares.

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::weft::connector::oauth;
use crate::bindings::weft::connector::types::Error as WitError;
use crate::call::CallState;
use crate::refusal::Refusal;

pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    oauth::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
}

impl oauth::Host for CallState {
    async fn access_token(&mut self, provider: String) -> wasmtime::Result<Result<String, WitError>> {
        if !self.grants.oauth.contains(&provider) {
            return Ok(Err(self.refuse(Refusal::OAuth(provider))));
        }
        Ok(Err(WitError::Unauthorized(format!(
            "OAuth is not configured on this Weft host, so there is no `{provider}` token for tenant `{}`",
            self.grants.tenant
        ))))
    }
}
