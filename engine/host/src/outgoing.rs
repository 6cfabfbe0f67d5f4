//! Sending a request that the egress gate let through. The host name is
//! resolved here, every address it resolves to is checked against the
//! [`AddressPolicy`], and the connection goes to an address that passed: a
//! name that resolves to a public address when checked and to a metadata
//! address when connecting (DNS rebinding) never gets there, because it is
//! resolved once. Then TLS (with the name, for the certificate) and HTTP/1.1,
//! as wasmtime-wasi-http's own sender does.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::refusal::{Refusal, Refusals};

/// Which addresses connectors may connect to. Checked on the addresses a
/// host name resolves to, at connect time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AddressPolicy {
    /// Refuse link-local addresses (which include the cloud metadata
    /// service at 169.254.169.254), the other cloud metadata addresses and
    /// the unspecified address; allow the rest. The default, so that local
    /// runs can reach services on this machine and the private network.
    #[default]
    NoLinkLocal,
    /// Also refuse loopback, private (10/8, 172.16/12, 192.168/16),
    /// shared (100.64/10), unique-local (fc00::/7), multicast and broadcast
    /// addresses: only public addresses. For servers that run other
    /// people's workflows.
    PublicOnly,
}

impl AddressPolicy {
    /// Why `ip` is refused, if it is.
    pub fn refuses(self, ip: IpAddr) -> Option<&'static str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if ip.is_unspecified() {
            return Some("the unspecified address");
        }
        if is_metadata(ip) {
            return Some("a cloud metadata address");
        }
        if match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        } {
            return Some("a link-local address");
        }
        if self == AddressPolicy::NoLinkLocal {
            return None;
        }
        match ip {
            IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
            IpAddr::V4(v4) if v4.is_private() => Some("a private address"),
            IpAddr::V4(v4) if is_shared(v4) => Some("a shared (carrier-grade NAT) address"),
            IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast() => Some("a multicast or broadcast address"),
            IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
            IpAddr::V6(v6) if v6.is_unique_local() => Some("a unique-local (private) address"),
            IpAddr::V6(v6) if v6.is_multicast() => Some("a multicast address"),
            _ => None,
        }
    }
}

/// The metadata services of the common clouds.
fn is_metadata(ip: IpAddr) -> bool {
    const AWS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    const ALIBABA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
    ip == IpAddr::V6(AWS_V6) || ip == IpAddr::V4(ALIBABA) || ip == IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))
}

/// 100.64.0.0/10.
fn is_shared(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 100 && (b & 0b1100_0000) == 64
}

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// What `send` resolves to: the response, and the connection's own future,
/// which reports how the exchange ended.
pub(crate) type Sent = (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>);

/// Resolves the request's host, connects to an address `policy` allows (any
/// address when `check` is false: the operator routed this host), and sends
/// the request. A host whose every address is refused is recorded in
/// `refusals` and fails with `DestinationIpProhibited`.
pub(crate) async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    policy: AddressPolicy,
    check: bool,
    refusals: Refusals,
) -> Result<Sent, Error> {
    let uri = request.uri();
    let tls = uri.scheme() == Some(&Scheme::HTTPS);
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let option = |pick: fn(&RequestOptions) -> Option<Duration>| {
        options.as_ref().and_then(pick).unwrap_or(Duration::from_secs(600))
    };
    let connect_timeout = option(|o| o.connect_timeout);
    let first_byte_timeout = option(|o| o.first_byte_timeout);
    let between_bytes_timeout = option(|o| o.between_bytes_timeout).max(Duration::from_nanos(1));

    let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::time::timeout(connect_timeout, tokio::net::lookup_host((bare.as_str(), port))).await {
            Err(_) => return Err(Error::DnsTimeout),
            Ok(Err(_)) => return Err(Error::DnsError { rcode: Some("address not available".into()), info_code: None }),
            Ok(Ok(found)) => found.collect(),
        },
    };
    let mut allowed = Vec::new();
    let mut refused = None;
    for address in addresses {
        match policy.refuses(address.ip()).filter(|_| check) {
            None => allowed.push(address),
            Some(why) => {
                refused.get_or_insert((address.ip(), why));
            }
        }
    }
    if allowed.is_empty() {
        if let Some((ip, why)) = refused {
            tracing::warn!(target: "weft::egress", %host, %ip, why, "connection refused before it opened");
            refusals.record(Refusal::Address { host, ip, why });
            return Err(Error::DestinationIpProhibited);
        }
        return Err(Error::DestinationNotFound);
    }

    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(&allowed[..])).await {
        Err(_) => return Err(Error::ConnectionTimeout),
        Ok(stream) => stream.map_err(Error::Connect)?,
    };
    let stream: Box<dyn Stream> = if tls {
        let name = match bare.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(bare.clone()).map_err(Error::InvalidDnsNameError)?,
        };
        let connector = tokio_rustls::TlsConnector::from(tls_config());
        Box::new(connector.connect(name, tcp).await.map_err(Error::Tls)?)
    } else {
        Box::new(tcp)
    };
    let handshake = hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream));
    let (mut sender, conn) =
        tokio::time::timeout(connect_timeout, handshake).await.map_err(|_| Error::ConnectionTimeout)??;

    // The request line carries the path only (the authority is for proxies).
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *request.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;

    let mut conn = Some(Box::pin(conn));
    let mut response = Box::pin(tokio::time::timeout(first_byte_timeout, sender.send_request(request)));
    // Drive the connection while waiting for the response.
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = response.as_mut().poll(cx) {
            return Poll::Ready(match result {
                Err(_) => Err(Error::ConnectionReadTimeout),
                Ok(result) => result.map_err(Error::from),
            });
        }
        if let Some(driving) = conn.as_mut() {
            let ended = ready!(driving.as_mut().poll(cx));
            conn = None;
            if let Err(e) = ended {
                return Poll::Ready(Err(Error::from(e)));
            }
            return match response.as_mut().poll(cx) {
                Poll::Ready(Err(_)) => Poll::Ready(Err(Error::ConnectionReadTimeout)),
                Poll::Ready(Ok(result)) => Poll::Ready(result.map_err(Error::from)),
                Poll::Pending => Poll::Pending,
            };
        }
        Poll::Pending
    })
    .await?;
    let response = response.map(|incoming| {
        let mut timeout = tokio::time::interval(between_bytes_timeout);
        timeout.reset();
        Timed { incoming, timeout }.boxed_unsync()
    });
    let rest: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        match conn {
            None => Ok(()),
            Some(conn) => conn.await.map_err(|e| if e.is_timeout() { Error::HttpResponseTimeout } else { e.into() }),
        }
    });
    Ok((response, rest))
}

/// The TLS client configuration (the webpki roots), built on first use and
/// shared by every request.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
        })
        .clone()
}

/// A response body that fails when no bytes come for the request's
/// between-bytes timeout.
struct Timed {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl http_body::Body for Timed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(if e.is_timeout() { Error::HttpResponseTimeout } else { Error::from(e) })))
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.incoming)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.incoming)
    }
}

#[cfg(test)]
mod tests {
    use super::AddressPolicy::{NoLinkLocal, PublicOnly};

    #[test]
    fn addresses_are_refused_by_kind() {
        let refused = |policy: super::AddressPolicy, ip: &str| policy.refuses(ip.parse().unwrap());
        for ip in
            ["169.254.169.254", "169.254.1.1", "fe80::1", "fd00:ec2::254", "0.0.0.0", "::", "::ffff:169.254.169.254"]
        {
            assert!(refused(NoLinkLocal, ip).is_some(), "{ip}");
            assert!(refused(PublicOnly, ip).is_some(), "{ip}");
        }
        for ip in
            ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "::1", "fd12::1", "::ffff:10.0.0.1"]
        {
            assert_eq!(refused(NoLinkLocal, ip), None, "{ip}");
            assert!(refused(PublicOnly, ip).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "100.128.0.1", "172.32.0.1"] {
            assert_eq!(refused(PublicOnly, ip), None, "{ip}");
        }
    }
}
