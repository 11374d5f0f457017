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
//! - `session`: the Session stream, heartbeats, reconnects.
//! - `uplink`: the ordered, acknowledged queue of log lines and updates.
//! - `journal`: missions on disk, so a restart neither loses nor repeats one.
//! - `executor`: what each mission kind does.
//! - `compose`, `health`, `release`, `follow`: docker compose, the health gate,
//!   release directories and `.env`, following container logs.
//! - [`ingress`]: the front door; `ingress::certs` keeps its TLS certificates
//!   (ACME HTTP-01, renewal, user-given pairs), `ingress::acme` talks ACME.

mod compose;
pub mod config;
mod executor;
mod follow;
mod health;
mod identity;
pub mod ingress;
pub mod install;
mod journal;
mod release;
mod resolve;
mod session;
mod uplink;

use std::sync::Arc;

use anyhow::Context;
use launch_core::private_file;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// The version agents report to the control plane.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    private_file::create_private_dir(&config.data_dir)
        .with_context(|| format!("create the data dir {}", config.data_dir.display()))?;
    let journal = Arc::new(
        journal::Journal::open(&config.data_dir.join("missions"))
            .context("open the mission journal")?,
    );
    let uplink = uplink::Uplink::new(uplink::DEFAULT_CAPACITY);
    let identity = identity::Shared::default();
    let (missions_tx, missions_rx) = tokio::sync::mpsc::unbounded_channel();
    // Certificates load from disk now; nothing is ordered until the front
    // door names its hosts (`ingress::Certificates::set_names`).
    let certificates = ingress::certs::AcmeCertificates::start(
        ingress::certs::AcmeSettings::from_config(&config),
        &config.data_dir,
        shutdown.clone(),
    );

    let executor = executor::Executor::new(
        config.clone(),
        journal.clone(),
        uplink.clone(),
        identity.clone(),
    );
    let executor_task = tokio::spawn(executor.run(missions_rx, shutdown.clone()));
    let sessions = session::Sessions {
        config: config.clone(),
        journal,
        uplink,
        identity,
        missions: missions_tx,
    };
    let session_result = sessions.run(shutdown.clone()).await;
    shutdown.cancel();
    executor_task
        .await
        .context("the mission executor panicked")?;
    certificates.stopped().await;
    session_result
}
