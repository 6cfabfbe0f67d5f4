//! An HTTP client over wasi:http. The host sends the request, and only to the
//! hosts in the connector's egress list.
//!
//! ```no_run
//! # fn demo(cx: &weft_sdk::Context) -> Result<(), weft_sdk::Error> {
//! use weft_sdk::http::Request;
//! let token = cx.secret("api_token")?.reveal()?;
//! let created: serde_json::Value = Request::post("https://api.example.com/v1/things")
//!     .bearer(&token)
//!     .idempotency_key(cx)
//!     .json(&serde_json::json!({ "name": "thing" }))
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! # Ok(()) }
//! ```

use std::io::Read;
use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

use crate::{Context, Error};

/// Responses larger than this are refused rather than buffered.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// An HTTP request being built. Nothing is sent until [`Request::send`].
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
    problem: Option<String>,
}

impl Request {
    /// A request with any method (`GET`, `POST`, …) to an `http://` or
    /// `https://` URL.
    pub fn new(method: &str, url: impl Into<String>) -> Request {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: None,
            problem: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Request {
        Request::new("PUT", url)
    }

    /// A `PATCH` request.
    pub fn patch(url: impl Into<String>) -> Request {
        Request::new("PATCH", url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Request {
        Request::new("DELETE", url)
    }

    /// Adds a header (names are case-insensitive; a repeated name is sent
    /// twice).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// `Authorization: Bearer TOKEN`.
    pub fn bearer(self, token: &str) -> Request {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// `Authorization: Basic …` from a user and password.
    pub fn basic(self, user: &str, password: &str) -> Request {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("authorization", format!("Basic {encoded}"))
    }

    /// Sends the step's idempotency key in `Idempotency-Key`, so that an API
    /// that deduplicates sees every attempt of the step as one request.
    pub fn idempotency_key(self, cx: &Context) -> Request {
        self.idempotency_key_in("idempotency-key", cx)
    }

    /// Sends the step's idempotency key in a header of the API's choosing.
    pub fn idempotency_key_in(self, header: &str, cx: &Context) -> Request {
        let key = cx.idempotency_key.clone();
        self.header(header, key)
    }

    /// Appends query parameters, percent-encoded.
    pub fn query(mut self, pairs: &[(&str, &str)]) -> Request {
        let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        if !encoded.is_empty() {
            self.url.push(if self.url.contains('?') { '&' } else { '?' });
            self.url.push_str(&encoded);
        }
        self
    }

    /// A JSON body, with `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Request {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = Some(bytes);
                self.header("content-type", "application/json")
            }
            Err(e) => {
                self.problem = Some(format!("the request body does not serialize to JSON: {e}"));
                self
            }
        }
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Request {
        let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        self.body = Some(encoded.into_bytes());
        self.header("content-type", "application/x-www-form-urlencoded")
    }

    /// A raw body with its content type.
    pub fn body(self, bytes: impl Into<Vec<u8>>, content_type: &str) -> Request {
        self.body_raw(bytes).header("content-type", content_type)
    }

    /// A raw body, with whatever `Content-Type` the headers already say.
    pub fn body_raw(mut self, bytes: impl Into<Vec<u8>>) -> Request {
        self.body = Some(bytes.into());
        self
    }

    /// Gives up on the response after `timeout` (the call's own deadline
    /// applies in any case).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response. Any status is `Ok`;
    /// use [`Response::error_for_status`] to fail on non-2xx.
    pub fn send(self) -> Result<Response, Error> {
        if let Some(problem) = self.problem {
            return Err(Error::invalid_input(problem));
        }
        let (scheme, rest) = if let Some(rest) = self.url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = self.url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(Error::invalid_input(format!("the URL must start with http:// or https://: {:?}", self.url)));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() {
            return Err(Error::invalid_input(format!("the URL has no host: {:?}", self.url)));
        }
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        let mut entries: Vec<(String, Vec<u8>)> =
            self.headers.iter().map(|(n, v)| (n.clone(), v.as_bytes().to_vec())).collect();
        if let Some(body) = &self.body
            && !entries.iter().any(|(n, _)| n == "content-length")
        {
            entries.push(("content-length".into(), body.len().to_string().into_bytes()));
        }
        let fields = Fields::from_list(&entries)
            .map_err(|e| Error::invalid_input(format!("a request header is invalid: {e:?}")))?;
        let request = OutgoingRequest::new(fields);
        request.set_method(&method).map_err(|()| Error::invalid_input(format!("bad method {:?}", self.method)))?;
        request.set_scheme(Some(&scheme)).map_err(|()| Error::invalid_input("bad scheme"))?;
        request.set_authority(Some(authority)).map_err(|()| Error::invalid_input(format!("bad host {authority:?}")))?;
        request.set_path_with_query(Some(&path)).map_err(|()| Error::invalid_input(format!("bad path {path:?}")))?;
        let outgoing = request.body().map_err(|()| Error::fatal("the request body was taken twice"))?;

        let options = self.timeout.map(|t| {
            let options = RequestOptions::new();
            let nanos = t.as_nanos().min(u64::MAX as u128) as u64;
            let _ = options.set_connect_timeout(Some(nanos));
            let _ = options.set_first_byte_timeout(Some(nanos));
            let _ = options.set_between_bytes_timeout(Some(nanos));
            options
        });
        let pending = outgoing_handler::handle(request, options).map_err(|e| send_error(authority, &e))?;
        // A server may answer before it has read the whole body (a 401 or a
        // 413, say) and close its side. The stream then reports Closed, and
        // the answer it gave is what the caller gets.
        let mut cut_short = None;
        {
            let stream = outgoing.write().map_err(|()| Error::fatal("the body stream was taken twice"))?;
            // Plain writes, no flush: once the host has every byte the
            // Content-Length announced, it may close the stream, and a flush
            // would then report the finished stream as an error.
            let mut rest: &[u8] = self.body.as_deref().unwrap_or_default();
            while !rest.is_empty() {
                let n = match stream.check_write() {
                    Ok(0) => {
                        stream.subscribe().block();
                        continue;
                    }
                    Ok(room) => rest.len().min(room as usize).min(4096),
                    Err(e) => {
                        cut_short = Some(e);
                        break;
                    }
                };
                if let Err(e) = stream.write(&rest[..n]) {
                    cut_short = Some(e);
                    break;
                }
                rest = &rest[n..];
            }
        }
        match cut_short {
            None => OutgoingBody::finish(outgoing, None).map_err(|e| send_error(authority, &e))?,
            Some(StreamError::Closed) => drop(outgoing),
            Some(e) => return Err(Error::transient(format!("sending the body to {authority}: {e:?}"))),
        }

        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(send_error(authority, &code)),
            Some(Err(())) | None => return Err(Error::fatal("the response was already taken")),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| Error::fatal("the response body was taken twice"))?;
        let mut body = Vec::new();
        {
            let stream = incoming.stream().map_err(|()| Error::fatal("the response stream was taken twice"))?;
            let mut limited = stream.take(MAX_RESPONSE_BYTES as u64 + 1);
            limited.read_to_end(&mut body).map_err(|e| Error::transient(format!("reading the response: {e}")))?;
        }
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(Error::fatal(format!(
                "the response from {authority} is larger than the limit of {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        Ok(Response { status, headers, body, host: authority.to_string() })
    }
}

/// What a failed send means for the retry policy.
fn send_error(authority: &str, code: &ErrorCode) -> Error {
    match code {
        ErrorCode::HttpRequestDenied => {
            Error::fatal(format!("the host refused the request to {authority}: it is not in the egress list"))
        }
        ErrorCode::HttpRequestBodySize(_) => {
            Error::fatal(format!("the host refused the request body to {authority}: it is over the size limit"))
        }
        ErrorCode::ConnectionTerminated => {
            Error::transient(format!("{authority} closed the connection before it answered the request"))
        }
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
            Error::invalid_input(format!("the request to {authority} is invalid: {}", reason(code)))
        }
        _ => Error::transient(format!("the request to {authority} failed: {}", reason(code))),
    }
}

/// A wasi:http error code in words, for messages that people read.
fn reason(code: &ErrorCode) -> String {
    let sized = |what: &str, size: Option<u64>| match size {
        Some(n) => format!("{what} is too large ({n} bytes)"),
        None => format!("{what} is too large"),
    };
    match code {
        ErrorCode::DnsTimeout => "looking up the host name timed out".into(),
        ErrorCode::DnsError(payload) => match &payload.rcode {
            Some(rcode) => format!("the host name could not be resolved ({rcode})"),
            None => "the host name could not be resolved".into(),
        },
        ErrorCode::DestinationNotFound => "the destination was not found".into(),
        ErrorCode::DestinationUnavailable => "the destination is unavailable".into(),
        ErrorCode::DestinationIpProhibited => "the destination's address is prohibited".into(),
        ErrorCode::DestinationIpUnroutable => "the destination's address cannot be reached".into(),
        ErrorCode::ConnectionRefused => "the connection was refused".into(),
        ErrorCode::ConnectionTerminated => "the connection was closed".into(),
        ErrorCode::ConnectionTimeout => "connecting timed out".into(),
        ErrorCode::ConnectionReadTimeout => "reading the response timed out".into(),
        ErrorCode::ConnectionWriteTimeout => "sending the request timed out".into(),
        ErrorCode::ConnectionLimitReached => "too many connections are open".into(),
        ErrorCode::TlsProtocolError => "the TLS handshake failed".into(),
        ErrorCode::TlsCertificateError => "the server's TLS certificate was not accepted".into(),
        ErrorCode::TlsAlertReceived(alert) => match &alert.alert_message {
            Some(message) => format!("the server sent a TLS alert ({message})"),
            None => "the server sent a TLS alert".into(),
        },
        ErrorCode::HttpRequestDenied => "the request was denied".into(),
        ErrorCode::HttpRequestLengthRequired => "the request needs a length".into(),
        ErrorCode::HttpRequestBodySize(size) => sized("the request body", *size),
        ErrorCode::HttpRequestMethodInvalid => "the method is invalid".into(),
        ErrorCode::HttpRequestUriInvalid => "the URL is invalid".into(),
        ErrorCode::HttpRequestUriTooLong => "the URL is too long".into(),
        ErrorCode::HttpRequestHeaderSectionSize(_) | ErrorCode::HttpRequestHeaderSize(_) => {
            "the request headers are too large".into()
        }
        ErrorCode::HttpRequestTrailerSectionSize(_) | ErrorCode::HttpRequestTrailerSize(_) => {
            "the request trailers are too large".into()
        }
        ErrorCode::HttpResponseIncomplete => "the response was cut off".into(),
        ErrorCode::HttpResponseHeaderSectionSize(_) | ErrorCode::HttpResponseHeaderSize(_) => {
            "the response headers are too large".into()
        }
        ErrorCode::HttpResponseBodySize(size) => sized("the response body", *size),
        ErrorCode::HttpResponseTrailerSectionSize(_) | ErrorCode::HttpResponseTrailerSize(_) => {
            "the response trailers are too large".into()
        }
        ErrorCode::HttpResponseTransferCoding(coding) | ErrorCode::HttpResponseContentCoding(coding) => match coding {
            Some(coding) => format!("the response's encoding `{coding}` is not supported"),
            None => "the response's encoding is not supported".into(),
        },
        ErrorCode::HttpResponseTimeout => "the server did not answer in time".into(),
        ErrorCode::HttpUpgradeFailed => "the protocol upgrade failed".into(),
        ErrorCode::HttpProtocolError => "the server broke the HTTP protocol".into(),
        ErrorCode::LoopDetected => "a forwarding loop was detected".into(),
        ErrorCode::ConfigurationError => "the host's HTTP configuration is invalid".into(),
        ErrorCode::InternalError(Some(message)) => message.clone(),
        ErrorCode::InternalError(None) => "an internal error".into(),
    }
}

/// Characters left as they are in a path segment: RFC 3986's unreserved set.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes `value` for use as one path segment, so that a `/`, `?`,
/// `#` or space in user input cannot change which resource a URL names.
///
/// ```
/// use weft_sdk::http::path_segment;
/// assert_eq!(path_segment("Sheet 1!A1:B2"), "Sheet%201%21A1%3AB2");
/// assert_eq!(path_segment("../admin"), "..%2Fadmin");
/// ```
pub fn path_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    host: String,
}

impl Response {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header, names in lower case.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 is replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T`; a mismatch is fatal and names the
    /// JSON path.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(&self.body);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            Error::fatal(format!(
                "the response from {} (HTTP {}) is not what was expected at `{}`: {}",
                self.host,
                self.status,
                e.path(),
                e.inner()
            ))
        })
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response when it is 2xx; otherwise the error its status calls for
    /// (see [`Error::from_status`]), with the start of the body in the message.
    pub fn error_for_status(self) -> Result<Response, Error> {
        if self.is_success() {
            return Ok(self);
        }
        let mut excerpt = self.text();
        if excerpt.len() > 300 {
            let mut cut = 300;
            while !excerpt.is_char_boundary(cut) {
                cut -= 1;
            }
            excerpt.truncate(cut);
            excerpt.push('…');
        }
        let message = format!("{} answered HTTP {}: {}", self.host, self.status, excerpt.trim());
        Err(Error::from_status(self.status, self.header("retry-after"), message))
    }
}
