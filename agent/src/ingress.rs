//! The front door: an HTTP and HTTPS reverse proxy inside the agent that
//! routes each request by its host name to the container of the service's
//! current release. It owns the pieces a request passes through and the one
//! handle the executor uses to switch a service's upstream. The route table
//! is read from the data dir before anything else starts, so a host whose
//! control plane is down keeps serving; every change is written back
//! atomically before it takes effect.
//!
//! # Layout
//! - `router`: host → service → the current [`Target`]; the swap on deploy.
//! - `table`: the route table as persisted in the data dir.
//! - `target`: one upstream with its in-flight count and drain.
//! - `proxy`: what happens to one request (challenge, redirect, forward, upgrade).
//! - `listener`: the accept loops, TLS and the slowloris timeouts.
//! - `drain`: how a client connection ends on shutdown or hand-over without
//!   resetting a request its client sent.
//! - `pages`: the plain error pages.
//! - `counters`: per-route responses by status class, upstream errors and
//!   latency, for heartbeats; `report`: the front door's state and counters
//!   as a heartbeat carries them.
//!
//! - `certs`, `acme`: the certificates behind the [`Certificates`] seam
//!   (ACME HTTP-01 for the routed names, renewal, user-given pairs).
//!
//! With ACME off, [`NoCertificates`] serves plain HTTP only and the HTTPS
//! listener completes no handshake.

pub mod acme;
mod body;
pub mod certs;
pub mod counters;
mod drain;
pub(crate) mod handover;
mod listener;
mod pages;
mod proxy;
mod report;
mod router;
mod table;
mod target;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use report::Reporter;
pub use router::Router;
pub use table::{Route, Table};
pub use target::Target;

/// What the front door needs from certificate management (ACME lives in `ingress::certs`).
pub trait Certificates: Send + Sync + 'static {
    /// The resolver for the HTTPS listener: only names with a live certificate resolve.
    fn resolver(&self) -> std::sync::Arc<dyn rustls::server::ResolvesServerCert>;
    /// True when `host` has a live certificate (plain HTTP then redirects to HTTPS).
    fn has_certificate(&self, host: &str) -> bool;
    /// The key authorization for an HTTP-01 token while an order for it is pending.
    fn http01_response(&self, token: &str) -> Option<String>;
    /// The names the route table holds now; certificates are ordered only for these.
    fn set_names(&self, names: &[String]);
    /// Deletes the certificates of names that left the route table for good
    /// (a preview's teardown), from memory and disk.
    fn forget(&self, _names: &[String]) {}
}

/// No certificate for any name: plain HTTP serves, HTTPS handshakes fail
/// with an alert (never a default certificate).
#[derive(Debug, Default)]
pub struct NoCertificates;

#[derive(Debug)]
struct ResolvesNothing;

impl rustls::server::ResolvesServerCert for ResolvesNothing {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

impl Certificates for NoCertificates {
    fn resolver(&self) -> Arc<dyn rustls::server::ResolvesServerCert> {
        Arc::new(ResolvesNothing)
    }
    fn has_certificate(&self, _host: &str) -> bool {
        false
    }
    fn http01_response(&self, _token: &str) -> Option<String> {
        None
    }
    fn set_names(&self, _names: &[String]) {}
}

/// Where the front door listens and how patient it is.
#[derive(Clone, Debug)]
pub struct Settings {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub timeouts: Timeouts,
    /// How long an old upstream may finish its in-flight requests.
    pub drain: Duration,
    /// Names routed to this agent's service besides `[http] hosts` and
    /// the mission's.
    pub extra_hosts: Vec<String>,
}

/// The slowloris-safe limits of every client connection.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// To send a request's headers, and the longest an idle keep-alive
    /// HTTP/1 connection is kept.
    pub header: Duration,
    /// The longest pause between two chunks of a request body.
    pub body: Duration,
    /// To finish the TLS handshake.
    pub handshake: Duration,
    /// To connect to the upstream and get its response head.
    pub upstream: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(30),
            body: Duration::from_secs(60),
            handshake: Duration::from_secs(10),
            upstream: Duration::from_secs(60),
        }
    }
}

/// The default time an old release has to finish its requests.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// The route table file in the agent's data dir.
pub fn table_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ingress").join("routes.json")
}

/// The running front door: the router and its listeners.
pub struct Ingress {
    pub router: Arc<Router>,
    /// Where each listener is bound (port 0 resolved).
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    open: drain::Open,
    tasks: JoinSet<()>,
}

/// How long the front door may take to end its connections once it stops
/// accepting (a self-upgrade waits that long before its re-exec).
pub const DRAIN_WAIT: Duration = listener::DRAIN_WAIT;

impl Ingress {
    /// Binds both listeners and serves `router` until `shutdown`.
    pub async fn start(
        settings: &Settings,
        router: Arc<Router>,
        certificates: Arc<dyn Certificates>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Ingress> {
        let http = listener::bind(settings.http, "--http-listen").await?;
        let https = listener::bind(settings.https, "--https-listen").await?;
        let http_addr = http.local_addr()?;
        let https_addr = https.local_addr()?;
        let shared = Arc::new(proxy::Proxy::new(
            router.clone(),
            certificates.clone(),
            settings.timeouts,
            https_addr.port(),
        ));
        let tls = listener::tls_config(certificates.resolver());
        let open = drain::Open::default();
        let mut tasks = JoinSet::new();
        tasks.spawn(listener::serve(
            http,
            None,
            shared.clone(),
            settings.timeouts,
            shutdown.clone(),
            open.clone(),
        ));
        tasks.spawn(listener::serve(
            https,
            Some(tls),
            shared,
            settings.timeouts,
            shutdown.clone(),
            open.clone(),
        ));
        info!(http = %http_addr, https = %https_addr, "front door listening");
        Ok(Ingress {
            router,
            http_addr,
            https_addr,
            open,
            tasks,
        })
    }

    /// How many client connections both listeners hold open.
    pub fn open_connections(&self) -> usize {
        self.open.count()
    }

    /// Waits for the listeners to stop (after `shutdown`).
    pub async fn stopped(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(err) = result {
                warn!(cause = %err, "a front door listener panicked");
            }
        }
    }
}

/// Serves the front door until `shutdown`. A port that is taken (another
/// proxy, or a service publishing 80 itself) is retried with backoff and
/// reported, while missions go on: the agent never stops running services
/// because it cannot route to them.
pub async fn serve(
    settings: Settings,
    router: Arc<Router>,
    certificates: Arc<dyn Certificates>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match Ingress::start(
            &settings,
            router.clone(),
            certificates.clone(),
            shutdown.clone(),
        )
        .await
        {
            Ok(ingress) => return ingress.stopped().await,
            Err(err) => {
                error!(cause = %format!("{err:#}"), retry_in = ?backoff, "the front door cannot start");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
