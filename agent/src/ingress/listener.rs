//! The accept loops of the two listeners. Each connection gets a deadline for
//! its TLS handshake and for every request head (which is also how long an
//! idle HTTP/1 keep-alive connection lives), HTTP/2 pings to find dead
//! peers, and is served by hyper's auto builder (HTTP/1.1 with upgrades, or
//! HTTP/2 when ALPN chose it). On shutdown or a hand-over the listeners stop
//! accepting and open connections are drained (`drain`): each finishes the
//! requests its client sent, within a grace period.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Timeouts;
use super::drain;
use super::handover;
use super::proxy::{Peer, Proxy};

/// How long a listener waits for its connections to drain: each has
/// `drain::GRACE` to finish its requests, then `drain::LINGER` to close.
pub const DRAIN_WAIT: Duration = drain::GRACE.saturating_add(drain::LINGER);

/// Listens on `addr`: the socket a self-upgrading agent handed over
/// (`handover`), else a new one.
pub async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    let listener = match handover::adopt(addr) {
        Some(inherited) => {
            inherited.set_nonblocking(true)?;
            TcpListener::from_std(inherited)?
        }
        None => TcpListener::bind(addr).await.with_context(|| {
            format!("the front door cannot listen on {addr}: free the port, choose another with {flag}, or pass --ingress off")
        })?,
    };
    handover::register(addr, listener.as_raw_fd());
    Ok(listener)
}

/// The HTTPS listener's rustls config: certificates from `resolver`, ALPN
/// `h2` then `http/1.1`, ring only.
pub fn tls_config(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Accepts connections on `listener` until `shutdown`, or until a
/// self-upgrade takes the socket over (then it stays open for the next
/// process); then drains the open connections (`drain`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    proxy: Arc<Proxy>,
    timeouts: Timeouts,
    shutdown: CancellationToken,
    open: drain::Open,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let acceptor = tls.map(TlsAcceptor::from);
    let draining = CancellationToken::new();
    let mut connections = JoinSet::new();
    let _running = handover::Running::start();
    let handing_over = handover::stopping();
    loop {
        let (stream, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = handing_over.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(cause = %err, "the front door cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let tracker = drain::Tracker::new(stream.as_raw_fd(), draining.clone());
        let stream = drain::Io::new(stream, tracker.clone());
        let counting = open.one();
        let builder = builder.clone();
        let proxy = proxy.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _counting = counting;
            let Some(acceptor) = acceptor else {
                let peer = Peer {
                    addr,
                    tls_name: None,
                    tls: false,
                };
                return serve_connection(Box::new(stream), builder, proxy, peer, tracker).await;
            };
            let handshake = tokio::time::timeout(timeouts.handshake, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    debug!(cause = %err, %addr, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%addr, "TLS handshake timed out");
                    return;
                }
            };
            let peer = Peer {
                addr,
                tls_name: stream.get_ref().1.server_name().map(str::to_owned),
                tls: true,
            };
            serve_connection(Box::new(stream), builder, proxy, peer, tracker).await;
        });
    }
    if handing_over.is_cancelled() {
        // The next process adopts the socket: never close it here.
        std::mem::forget(listener);
    } else {
        drop(listener);
    }
    draining.cancel();
    let all_closed = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_WAIT, all_closed).await.is_err() {
        warn!(
            open = connections.len(),
            "front door connections still open at the end of the drain are cut"
        );
    }
    connections.abort_all();
}

/// A client connection, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for S {}

/// Serves HTTP on one client connection (HTTP/1.1 with upgrades, or HTTP/2)
/// until it ends or is drained.
async fn serve_connection(
    stream: Box<dyn Stream>,
    builder: Arc<Builder<TokioExecutor>>,
    proxy: Arc<Proxy>,
    peer: Peer,
    tracker: Arc<drain::Tracker>,
) {
    let addr = peer.addr;
    let exchanges = tracker.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let exchange = exchanges.begin(req.version());
        let proxy = proxy.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(exchange.respond(proxy.handle(req, peer).await)) }
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    match drain::drive(Box::pin(conn), &tracker).await {
        Some(Ok(())) => {}
        Some(Err(err)) => debug!(cause = %err, %addr, "a connection ended with an error"),
        None => debug!(%addr, "a connection open at the end of the drain is cut"),
    }
}
