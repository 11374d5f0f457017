//! `launch-agent`: the process on each host that turns missions from the
//! control plane into running compose services. It registers once with a
//! single-use join token, keeps one bidirectional session open (reconnecting
//! with jittered backoff), journals every mission before acknowledging it,
//! runs missions one at a time with `docker compose`, gates them on health,
//! rolls back on failure, and streams every log line back, redacted and
//! numbered so none is lost or repeated. Losing the control plane never stops
//! a running service: the session loop and the missions are independent.
//!
//! # Layout
//! - [`config`]: the typed config from flags, env and `/etc/launch/agent.toml`.
//! - [`install`]: `launch-agent install`/`uninstall`: config, systemd unit, enable.
//! - `identity`: registration and the saved agent token.
//! - `resolve`: host names resolved in Rust, so the static binary needs no NSS.
//! - [`control_urls`]: the control plane's replicas, and moving to the next.
//! - `session`: the Session stream, heartbeats, reconnects.
//! - `uplink`: the ordered, acknowledged queue of log lines and updates.
//! - `journal`: missions on disk, so a restart neither loses nor repeats one.
//! - `executor`: what each mission kind does; `cancels`: the ones asked to stop.
//! - `upgrade`: self-upgrade: fetch, swap, restart, and the watchdog that rolls back.
//! - `watch`: the current release between missions, reported degraded when a service dies.
//! - `limits`: the bundle size a mission may have (the control plane's, under the agent's ceiling).
//! - `policy`: the host policy, held against a release's interpolated compose file.
//! - `preview`: pull-request previews beside the service: their project,
//!   directory, names, limits, teardown and the sweep.
//! - `cutover`: a routed service's new container next to the old one,
//!   health first, then the switch and the drain.
//! - `compose`, `health`, `release`, `follow`: docker compose, the health gate,
//!   release directories and `.env`, following container logs.
//! - `dotenv`: the `.env` encoded for the compose (v1 or v2) that reads it.
//! - `service_log`: what the agent itself says in the service's log between
//!   missions (each certificate order that failed, and the one that worked after).
//! - [`ingress`]: the front door, routing HTTP(S) by host name to the
//!   services; its route table and certificates are restored before the
//!   session opens. `ingress::certs` keeps the TLS certificates (ACME
//!   HTTP-01, renewal, user-given pairs), `ingress::acme` talks ACME.

mod cancels;
mod compose;
pub mod config;
pub mod control_urls;
mod cutover;
mod dotenv;
mod executor;
mod follow;
mod health;
mod identity;
pub mod ingress;
pub mod install;
mod journal;
mod limits;
mod policy;
mod preview;
mod release;
mod resolve;
mod service_log;
mod service_url;
mod session;
mod upgrade;
mod uplink;
mod watch;

use std::sync::Arc;

use anyhow::Context;
use launch_core::private_file;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// The version agents report to the control plane.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Takes the front door's sockets a self-upgrading agent handed over out of
/// the environment (see `ingress::handover`).
///
/// # Safety
/// Call before any other thread runs.
pub unsafe fn take_inherited_listeners() {
    // SAFETY: forwarded from the caller.
    unsafe { ingress::handover::take_env() }
}

/// The upgrade watchdog process (`launch-agent upgrade-watchdog`).
pub fn upgrade_watchdog(data_dir: &std::path::Path) -> Result<String, String> {
    upgrade::watchdog::run(data_dir)
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    // Starts hashing the executable for the Hellos (see `upgrade`).
    let _ = upgrade::own_sha256();
    private_file::create_private_dir(&config.data_dir)
        .with_context(|| format!("create the data dir {}", config.data_dir.display()))?;
    let journal = Arc::new(
        journal::Journal::open(&config.data_dir.join("missions"))
            .context("open the mission journal")?,
    );
    // The front door first: a host whose control plane is down still serves.
    // Certificates load from disk now; nothing is ordered until the front
    // door names its hosts (`ingress::Certificates::set_names`).
    let acme = ingress::certs::AcmeCertificates::start(
        ingress::certs::AcmeSettings::from_config(&config),
        &config.data_dir,
        shutdown.clone(),
    );
    let certificates: Arc<dyn ingress::Certificates> = acme.clone();
    let router = Arc::new(
        ingress::Router::restore(ingress::table_path(&config.data_dir), certificates.clone())
            .context("restore the front door's route table")?,
    );
    let ingress_task = config.ingress.clone().map(|settings| {
        tokio::spawn(ingress::serve(
            settings,
            router.clone(),
            certificates.clone(),
            shutdown.clone(),
        ))
    });
    let uplink = uplink::Uplink::new(uplink::DEFAULT_CAPACITY);
    let identity = identity::Shared::default();
    let (missions_tx, missions_rx) = tokio::sync::mpsc::unbounded_channel();
    let cancels = cancels::Cancels::default();
    let connected = session::Connected::default();
    let (previews_tx, previews_rx) = tokio::sync::watch::channel(None);

    let mut executor = executor::Executor::new(
        config.clone(),
        journal.clone(),
        uplink.clone(),
        identity.clone(),
        cancels.clone(),
        connected.clone(),
    )
    .with_previews(previews_rx);
    if let Some(settings) = &config.ingress {
        executor = executor.with_front(cutover::Front {
            router: router.clone(),
            drain: settings.drain,
            http_port: settings.http.port(),
            https_port: settings.https.port(),
            private_ca: config.acme_ca_root.is_some(),
            extra_hosts: settings.extra_hosts.clone(),
        });
    }
    let executor_task = tokio::spawn(executor.run(missions_rx, shutdown.clone()));
    let cert_log = tokio::spawn(service_log::certificates(
        acme.clone(),
        config.clone(),
        journal.clone(),
        uplink.clone(),
        shutdown.clone(),
    ));
    let sessions = session::Sessions {
        config: config.clone(),
        journal,
        uplink,
        identity,
        missions: missions_tx,
        cancels,
        connected,
        previews: previews_tx,
        front_door: config
            .ingress
            .is_some()
            .then(|| ingress::Reporter::new(router.clone(), acme.clone())),
    };
    let session_result = sessions.run(shutdown.clone()).await;
    shutdown.cancel();
    executor_task
        .await
        .context("the mission executor panicked")?;
    if let Some(task) = ingress_task {
        task.await.context("the front door panicked")?;
    }
    acme.stopped().await;
    let _ = cert_log.await;
    session_result
}
