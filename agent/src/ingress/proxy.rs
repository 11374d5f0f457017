//! What happens to one request, in order: an ACME HTTP-01 challenge on the
//! plain listener is answered from the certificate side; the host name is
//! looked up (404 unknown, 503 no healthy release); plain HTTP for a name
//! with a live certificate is redirected (308); everything else goes to the
//! service's current container over HTTP/1.1 with hop-by-hop headers
//! removed and `X-Forwarded-*` set, bodies streamed both ways. An `Upgrade`
//! (WebSocket) whose upstream answers 101 becomes a byte tunnel counted on
//! its target, closed only at the end of that target's drain. Every response
//! for a routed name is counted on its route (`counters`): status class,
//! time to the response head, and upstream errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::{debug, warn};

use super::body::{BoxError, Counted, Patient};
use super::router::{Lookup, Router};
use super::table::normalize_host;
use super::target::{InFlight, Target};
use super::{Certificates, Timeouts, pages};

/// Every body the proxy sends back.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The connection a request came in on.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The TLS server name the client asked for (`None`: plain HTTP).
    pub tls_name: Option<String>,
    pub tls: bool,
}

pub struct Proxy {
    router: Arc<Router>,
    certificates: Arc<dyn Certificates>,
    client: Client<HttpConnector, ProxyBody>,
    timeouts: Timeouts,
    /// The HTTPS listener's port, for redirects (443 is left out of the URL).
    https_port: u16,
}

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

impl Proxy {
    pub fn new(
        router: Arc<Router>,
        certificates: Arc<dyn Certificates>,
        timeouts: Timeouts,
        https_port: u16,
    ) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeouts.handshake));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build(connector);
        Proxy {
            router,
            certificates,
            client,
            timeouts,
            https_port,
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<ProxyBody> {
        let started = Instant::now();
        let Some(host) = request_host(&req) else {
            return pages::bad_request("the request names no host: send a Host header");
        };
        let name = normalize_host(&host);
        if !peer.tls
            && let Some(token) = req.uri().path().strip_prefix(CHALLENGE_PREFIX)
        {
            return match self.certificates.http01_response(token) {
                Some(key_authorization) => pages::challenge(key_authorization),
                None => pages::not_found(),
            };
        }
        if let Some(sni) = &peer.tls_name
            && normalize_host(sni) != name
        {
            let mut response = pages::bad_request(&format!(
                "the TLS server name {sni:?} and the Host {name:?} differ"
            ));
            *response.status_mut() = StatusCode::MISDIRECTED_REQUEST;
            return response;
        }
        let (service, response) = match self.router.lookup(&name) {
            Lookup::Unknown => return pages::unknown_host(&name),
            Lookup::NoRelease { service } => {
                let response = pages::no_release(&service);
                (service, response)
            }
            Lookup::Target {
                service,
                target,
                guard,
            } => {
                let response = if !peer.tls && self.certificates.has_certificate(&name) {
                    pages::to_https(&self.https_url(&name, req.uri()))
                } else {
                    self.forward(req, &peer, &host, &service, target, guard)
                        .await
                };
                (service, response)
            }
        };
        self.router
            .counters()
            .route(&service)
            .response(response.status().as_u16(), started.elapsed());
        response
    }

    fn https_url(&self, name: &str, uri: &Uri) -> String {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        match self.https_port {
            443 => format!("https://{name}{path}"),
            port => format!("https://{name}:{port}{path}"),
        }
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
        host: &str,
        service: &str,
        target: Arc<Target>,
        guard: InFlight,
    ) -> Response<ProxyBody> {
        let upgrade = upgrade_protocol(&req);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        parts.uri = match format!("http://{}{path}", target.addr).parse() {
            Ok(uri) => uri,
            Err(_) => return pages::bad_request("the request target is not a valid path"),
        };
        parts.version = Version::HTTP_11;
        remove_hop_headers(&mut parts.headers);
        set_forwarded(&mut parts.headers, peer, host);
        if let Some(protocol) = upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol);
        }
        let body = Patient::new(body, self.timeouts.body).boxed_unsync();
        let upstream = self.client.request(Request::from_parts(parts, body));
        let mut response = match tokio::time::timeout(self.timeouts.upstream, upstream).await {
            Err(_) => {
                warn!(service, upstream = %target.addr, "the upstream did not answer in time");
                self.router.counters().route(service).upstream_error();
                return pages::gateway_timeout(service);
            }
            Ok(Err(err)) => {
                warn!(service, upstream = %target.addr, cause = %err, "the upstream cannot be reached");
                self.router.counters().route(service).upstream_error();
                return pages::bad_gateway(service);
            }
            Ok(Ok(response)) => response,
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let (tunnel, closing) = target.tunnel();
            let service = service.to_owned();
            tokio::spawn(async move {
                let _tunnel = tunnel;
                let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
                    (Ok(client), Ok(upstream)) => (client, upstream),
                    (Err(err), _) | (_, Err(err)) => {
                        debug!(service, cause = %err, "an upgrade did not complete");
                        return;
                    }
                };
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    _ = closing.cancelled() => {
                        use tokio::io::AsyncWriteExt;
                        let _ = client.shutdown().await;
                        let _ = upstream.shutdown().await;
                    }
                }
            });
            let (parts, _) = response.into_parts();
            drop(guard);
            return Response::from_parts(
                parts,
                Empty::new().map_err(|n| match n {}).boxed_unsync(),
            );
        }
        let (mut parts, body) = response.into_parts();
        remove_hop_headers(&mut parts.headers);
        Response::from_parts(parts, Counted::new(body, guard).boxed_unsync())
    }
}

/// The host the client asked for: the URI's authority (HTTP/2, absolute
/// form), else the `Host` header.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .filter(|h| !h.is_empty())
}

/// The protocol an HTTP/1.1 request asks to upgrade to.
fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten()
}

const HOP_HEADERS: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Removes the headers that belong to one connection, including those the
/// `Connection` header names.
fn remove_hop_headers(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_HEADERS.iter()) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn set_forwarded(headers: &mut HeaderMap, peer: &Peer, host: &str) {
    let client = peer.addr.ip().to_string();
    let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, {client}"),
        _ => client,
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if peer.tls { "https" } else { "http" }),
    );
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", value.clone());
        headers.entry(header::HOST).or_insert(value);
    }
}
