//! The error an action returns. Its case tells the engine whether a retry can
//! help.

use std::time::{Duration, SystemTime};

use crate::__private::WitError;
use crate::__private::bindings::weft::connector::types::RateLimit;

/// Why an action failed. The engine's retry policy reads the case:
/// `Transient` and `RateLimited` are retried, the others are not (unless the
/// workflow says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input does not fit the action; retrying will not help.
    InvalidInput(String),
    /// The credentials were refused, or are missing.
    Unauthorized(String),
    /// The upstream asked us to slow down.
    RateLimited {
        /// How long it asked us to wait, if it said.
        retry_after: Option<Duration>,
        /// What it said.
        message: String,
    },
    /// A passing failure (network, 5xx); a retry may succeed.
    Transient(String),
    /// A permanent failure.
    Fatal(String),
}

impl Error {
    /// [`Error::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Error {
        Error::InvalidInput(message.into())
    }

    /// [`Error::Unauthorized`].
    pub fn unauthorized(message: impl Into<String>) -> Error {
        Error::Unauthorized(message.into())
    }

    /// [`Error::Transient`].
    pub fn transient(message: impl Into<String>) -> Error {
        Error::Transient(message.into())
    }

    /// [`Error::Fatal`].
    pub fn fatal(message: impl Into<String>) -> Error {
        Error::Fatal(message.into())
    }

    /// The error for an HTTP status that is not a success: 429 is rate-limited
    /// (with `retry_after`, the `Retry-After` header, in seconds or as an HTTP
    /// date), 401 and 403 are unauthorized, 408 and 5xx are transient, 400 and
    /// 422 are invalid input, and any other status is fatal.
    pub fn from_status(status: u16, retry_after: Option<&str>, message: impl Into<String>) -> Error {
        let message = message.into();
        match status {
            429 => Error::RateLimited { retry_after: retry_after.and_then(parse_retry_after), message },
            401 | 403 => Error::Unauthorized(message),
            408 | 500..=599 => Error::Transient(message),
            400 | 422 => Error::InvalidInput(message),
            _ => Error::Fatal(message),
        }
    }

    /// The message, without the case.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidInput(m) | Error::Unauthorized(m) | Error::Transient(m) | Error::Fatal(m) => m,
            Error::RateLimited { message, .. } => message,
        }
    }
}

/// `Retry-After` is either delay-seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Error::InvalidInput(_) => "invalid input",
            Error::Unauthorized(_) => "unauthorized",
            Error::RateLimited { .. } => "rate limited",
            Error::Transient(_) => "transient",
            Error::Fatal(_) => "fatal",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for Error {}

impl From<Error> for WitError {
    fn from(e: Error) -> WitError {
        match e {
            Error::InvalidInput(m) => WitError::InvalidInput(m),
            Error::Unauthorized(m) => WitError::Unauthorized(m),
            Error::RateLimited { retry_after, message } => WitError::RateLimited(RateLimit {
                retry_after_ms: retry_after.map(|d| d.as_millis().min(u64::MAX as u128) as u64),
                message,
            }),
            Error::Transient(m) => WitError::Transient(m),
            Error::Fatal(m) => WitError::Fatal(m),
        }
    }
}

impl From<WitError> for Error {
    fn from(e: WitError) -> Error {
        match e {
            WitError::InvalidInput(m) => Error::InvalidInput(m),
            WitError::Unauthorized(m) => Error::Unauthorized(m),
            WitError::RateLimited(r) => {
                Error::RateLimited { retry_after: r.retry_after_ms.map(Duration::from_millis), message: r.message }
            }
            WitError::Transient(m) => Error::Transient(m),
            WitError::Fatal(m) => Error::Fatal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_pick_the_case_the_retry_policy_needs() {
        assert_eq!(
            Error::from_status(429, Some("7"), "slow down"),
            Error::RateLimited { retry_after: Some(Duration::from_secs(7)), message: "slow down".into() }
        );
        assert!(matches!(Error::from_status(429, Some("soon"), "x"), Error::RateLimited { retry_after: None, .. }));
        assert!(matches!(Error::from_status(401, None, "x"), Error::Unauthorized(_)));
        assert!(matches!(Error::from_status(403, None, "x"), Error::Unauthorized(_)));
        assert!(matches!(Error::from_status(503, None, "x"), Error::Transient(_)));
        assert!(matches!(Error::from_status(408, None, "x"), Error::Transient(_)));
        assert!(matches!(Error::from_status(422, None, "x"), Error::InvalidInput(_)));
        assert!(matches!(Error::from_status(404, None, "x"), Error::Fatal(_)));
    }

    #[test]
    fn a_retry_after_date_becomes_a_delay() {
        let later = SystemTime::now() + Duration::from_secs(120);
        let header = httpdate::fmt_http_date(later);
        let Error::RateLimited { retry_after: Some(delay), .. } = Error::from_status(429, Some(&header), "x") else {
            panic!("expected a delay");
        };
        assert!(delay > Duration::from_secs(100) && delay <= Duration::from_secs(120), "{delay:?}");
    }
}
