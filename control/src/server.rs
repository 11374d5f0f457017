//! The control plane process (`launch server`): configuration, start-up and
//! shutdown. One TCP port serves both gRPC (the agent and control services,
//! tonic) and plain HTTP (`/healthz`, `/metrics`, the agent download, axum):
//! tonic's routes become an axum router merged with the HTTP routes and served
//! by `axum::serve`, which speaks HTTP/1.1 and h2c on the same socket. With
//! `--tls-cert` and `--tls-key` the same router is served over TLS instead
//! (`tls`: rustls with ring, ALPN h2 + http/1.1).
//!
//! # Layout
//! - [`store`]: the database (SQLite or PostgreSQL) and every query.
//! - [`hub`]: live sessions, per-mission broadcasts, counters.
//! - `state`: what every request handler shares (auth, dispatch, secrets).
//! - `agent_service`, `control_service`: the two gRPC services.
//! - `agent_upgrade`: the served agent binary, accepted agent versions, `agents upgrade`.
//! - [`authz`]: who may call which control RPC (the one authorization layer);
//!   `api_tokens`: minting, listing and revoking scoped API tokens.
//! - `allowances`: host-policy allowances an admin grants a service.
//! - `bundle_check`: an uploaded bundle's compose file, checked as `launch deploy` checks it.
//! - [`bundle_store`]: where accepted bundles are kept: the data dir or S3.
//! - [`front_door`]: the agents' front-door reports: routes and certificates
//!   for `status`, proxy counters added up once for `/metrics`.
//! - `http`: the plain HTTP endpoints.
//! - `last_seen`: when a connected agent's `last_seen` is written (on open, every 30 s, on close).
//! - `dashboard`: the web dashboard at `/` (sessions, pages, live events),
//!   making every call through the authorized control service in-process.
//! - `fleet`: `WhoAmI` and `WatchEvents`, the fleet-wide stream of state changes.
//! - `missions`: the missions an operator queues or stops by hand (restart, retire, cancel).
//! - [`previews`]: pull-request previews: the cap, listing, teardown, the idle sweep.
//! - `log_cursor`: one reader's position in a mission's log (lines, gaps), shared by WatchMission and StreamLogs.
//! - `secrets`, `tokens`: encryption at rest, bearer tokens.
//! - `tls`: the TLS listener.
//! - [`rotate`]: `launch server rotate-key`, re-encrypting every secret.
//! - `wakeup`: on PostgreSQL, missions recorded by another replica reach the
//!   agents whose sessions this one holds (LISTEN/NOTIFY, and a periodic check).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use launch_core::private_file;
use launch_proto::agent_service_server::AgentServiceServer;
use launch_proto::control_service_server::ControlServiceServer;

mod agent_service;
mod agent_upgrade;
mod allowances;
mod api_tokens;
pub mod authz;
mod bundle_check;
pub mod bundle_store;
mod control_service;
pub mod dashboard;
mod digest;
mod fleet;
pub mod front_door;
pub mod github;
mod http;
pub mod hub;
mod last_seen;
mod log_cursor;
mod missions;
pub mod previews;
mod provider_mirror;
mod relay;
pub mod rotate;
pub mod secrets;
mod state;
pub mod store;
mod tags;
pub mod tls;
pub mod tokens;
mod wakeup;

/// moto's S3 for the bundle store's tests, shared with the e2e crate as a
/// file like `test_postgres`.
#[cfg(test)]
#[path = "../../tests/src/moto_s3.rs"]
mod test_moto_s3;
/// The e2e crate's throwaway PostgreSQL cluster, shared as a file (it is
/// std-only) so the store tests need no dependency on the e2e harness.
#[cfg(test)]
#[path = "../../tests/src/postgres.rs"]
mod test_postgres;
#[cfg(test)]
mod tests;

/// Exit code for bad configuration (EX_USAGE / EX_CONFIG family).
pub const EXIT_CONFIG: u8 = 64;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;
/// How long shutdown waits for connections to drain.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Flags of `launch server`.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerFlags {
    /// Address to listen on for gRPC and HTTP (port 0 picks a free port)
    #[arg(long, env = "LAUNCH_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Where the database, bundles, admin token and secret key live
    /// [default: ~/.local/share/launch/server]
    #[arg(long, env = "LAUNCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH, or postgres://USER:PASSWORD@HOST/DB for
    /// several replicas on one database (TLS with `?sslmode=verify-full`)
    /// [default: sqlite://<data-dir>/launch.db]
    #[arg(long, env = "LAUNCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Most database connections this server opens [default: 8 on SQLite,
    /// 10 on PostgreSQL]
    #[arg(long, env = "LAUNCH_DATABASE_POOL_SIZE")]
    pub database_pool_size: Option<u32>,
    /// The launch-agent binary served at /v1/agent/download/linux-amd64
    /// [default: launch-agent beside this executable]
    #[arg(long, env = "LAUNCH_AGENT_BINARY")]
    pub agent_binary: Option<PathBuf>,
    /// The launch CLI binary served at /v1/cli/download/linux-amd64 (for CI
    /// jobs) [default: this executable]
    #[arg(long, env = "LAUNCH_CLI_BINARY")]
    pub cli_binary: Option<PathBuf>,
    /// Where bundles are kept: s3://BUCKET/PREFIX in an S3-compatible
    /// store every replica shares (the standard AWS chain for credentials
    /// and region; AWS_ENDPOINT_URL_S3 for another endpoint, then addressed
    /// path-style) [default: <data-dir>/bundles]
    #[arg(long, env = "LAUNCH_BUNDLE_STORE")]
    pub bundle_store: Option<String>,
    /// Largest bundle a deploy may upload, in bytes
    #[arg(long, env = "LAUNCH_MAX_BUNDLE_BYTES", default_value_t = DEFAULT_MAX_BUNDLE_BYTES)]
    pub max_bundle_bytes: u64,
    /// PEM certificate (chain) to serve TLS with; needs --tls-key. Without
    /// it the port speaks plain HTTP/1.1 and h2c
    #[arg(long, env = "LAUNCH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "LAUNCH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Directory holding the `terraform-provider-launch` binary served through
    /// Terraform's provider network mirror protocol at /v1/terraform/providers/
    /// [default: beside this executable]
    #[arg(long, env = "LAUNCH_PROVIDER_DIR")]
    pub provider_dir: Option<PathBuf>,
    #[command(flatten)]
    pub github: github::GithubFlags,
    #[command(flatten)]
    pub previews: previews::PreviewFlags,
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
}

/// Offline operations on a stopped server's data dir.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ServerCommand {
    /// Re-encrypt every secret with a new random key (stop the server first)
    RotateKey(rotate::RotateKeyArgs),
}

/// Everything `run` needs, validated.
#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A `sqlite://` or `postgres://` URL.
    pub database_url: String,
    /// Most connections to the database; `None`: the engine's default.
    pub database_pool_size: Option<u32>,
    /// On PostgreSQL, how often queued missions of the agents held here are
    /// looked for, in case a notification from another replica was lost.
    pub mission_check_every: Duration,
    /// How often the lines and state of missions watched here but written
    /// elsewhere are compared with the store (PostgreSQL; `relay`).
    pub relay_check_every: Duration,
    pub agent_binary: Option<PathBuf>,
    pub cli_binary: Option<PathBuf>,
    pub max_bundle_bytes: u64,
    /// Where accepted bundles are kept.
    pub bundle_store: bundle_store::Location,
    /// The AWS settings of an S3 bundle store; `None`: the standard chain
    /// (env, profile, IMDS), loaded at start. Tests point it at moto.
    pub aws: Option<aws_config::SdkConfig>,
    /// The secret key; `None` means `<data-dir>/secret.key` (created at first start).
    pub secret_key: Option<[u8; 32]>,
    /// Serve TLS with this rustls config (from `--tls-cert`/`--tls-key`).
    pub tls: Option<Arc<tls::ServerTlsConfig>>,
    /// Where `terraform-provider-launch` is; `None` means beside this executable.
    pub provider_dir: Option<PathBuf>,
    /// Webhook secret and reporting token (both off by default).
    pub github: github::GithubConfig,
    /// Pull-request previews: cap, idle TTL, container limits.
    pub previews: previews::Settings,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &store::redacted_url(&self.database_url))
            .field("database_pool_size", &self.database_pool_size)
            .field("mission_check_every", &self.mission_check_every)
            .field("relay_check_every", &self.relay_check_every)
            .field("agent_binary", &self.agent_binary)
            .field("cli_binary", &self.cli_binary)
            .field("max_bundle_bytes", &self.max_bundle_bytes)
            .field("bundle_store", &self.bundle_store.to_string())
            .field(
                "secret_key",
                &self.secret_key.map(|_| "<from LAUNCH_SECRET_KEY>"),
            )
            .field("tls", &self.tls.is_some())
            .field("provider_dir", &self.provider_dir)
            .field("github", &self.github)
            .field("previews", &self.previews)
            .finish()
    }
}

impl ServerConfig {
    /// The config `launch dev` uses: SQLite and keys under `data_dir`, the
    /// agent binary beside the running executable, default limits.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        let data_dir = data_dir.into();
        ServerConfig {
            listen,
            database_url: sqlite_url(&data_dir),
            database_pool_size: None,
            mission_check_every: wakeup::CHECK_EVERY,
            relay_check_every: relay::CHECK_EVERY,
            data_dir,
            agent_binary: agent_binary_beside_exe(),
            cli_binary: std::env::current_exe().ok(),
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
            bundle_store: bundle_store::Location::DataDir,
            aws: None,
            secret_key: None,
            tls: None,
            provider_dir: None,
            github: github::GithubConfig::default(),
            previews: previews::Settings::default(),
        }
    }

    /// Validates flags (and `LAUNCH_SECRET_KEY`), reporting every problem at once.
    pub fn from_flags(flags: &ServerFlags) -> Result<Self, Vec<String>> {
        let secret_key = std::env::var(secrets::KEY_ENV).ok();
        Self::from_flags_with(flags, secret_key.as_deref(), std::env::var_os("HOME"))
    }

    fn from_flags_with(
        flags: &ServerFlags,
        secret_key: Option<&str>,
        home: Option<std::ffi::OsString>,
    ) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let listen = flags
            .listen
            .parse::<SocketAddr>()
            .map_err(|err| {
                errors.push(format!(
                    "--listen {:?} is not an address: {err}; give e.g. 127.0.0.1:7400 or 0.0.0.0:7400",
                    flags.listen
                ))
            })
            .ok();
        let data_dir = match (&flags.data_dir, home) {
            (Some(dir), _) => Some(dir.clone()),
            (None, Some(home)) => Some(PathBuf::from(home).join(".local/share/launch/server")),
            (None, None) => {
                errors.push("HOME is not set: pass --data-dir or set LAUNCH_DATA_DIR".to_owned());
                None
            }
        };
        let database_url = match (&flags.database_url, &data_dir) {
            (Some(url), _) => match store::check_url(url) {
                Ok(()) => Some(url.clone()),
                Err(problem) => {
                    errors.push(format!(
                        "--database-url {:?} {problem}",
                        store::redacted_url(url)
                    ));
                    None
                }
            },
            (None, Some(dir)) => Some(sqlite_url(dir)),
            (None, None) => None,
        };
        if let Some(path) = &flags.agent_binary
            && !path.is_file()
        {
            errors.push(format!(
                "--agent-binary {} does not exist: build it with `cargo build -p launch-agent` or leave the flag unset",
                path.display()
            ));
        }
        if let Some(path) = &flags.cli_binary
            && !path.is_file()
        {
            errors.push(format!(
                "--cli-binary {} does not exist: point it at a built `launch` or leave the flag unset",
                path.display()
            ));
        }
        if let Some(dir) = &flags.provider_dir
            && !dir.join(crate::provider_package::BINARY).is_file()
        {
            errors.push(format!(
                "--provider-dir {} holds no {}: build it with `cargo build -p terraform-provider-launch` and point the flag at its directory, or leave the flag unset",
                dir.display(),
                crate::provider_package::BINARY
            ));
        }
        if flags.database_pool_size == Some(0) {
            errors
                .push("--database-pool-size must be above 0 (or unset for the default)".to_owned());
        }
        if flags.max_bundle_bytes == 0 {
            errors.push("--max-bundle-bytes must be above 0".to_owned());
        }
        let bundle_store = match &flags.bundle_store {
            Some(text) => bundle_store::Location::parse(text)
                .map_err(|err| errors.push(err))
                .unwrap_or_default(),
            None => bundle_store::Location::DataDir,
        };
        let secret_key = match secret_key {
            Some(text) => secrets::parse_key(text, secrets::KEY_ENV)
                .map_err(|err| errors.push(err.to_string()))
                .ok(),
            None => None,
        };
        let tls = match (&flags.tls_cert, &flags.tls_key) {
            (Some(cert), Some(key)) => tls::server_config(cert, key)
                .map_err(|err| errors.push(err.to_string()))
                .ok(),
            (None, None) => None,
            _ => {
                errors
                    .push("--tls-cert and --tls-key go together: give both or neither".to_owned());
                None
            }
        };
        let github = github::GithubConfig::from_flags(&flags.github, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ServerConfig {
            listen: listen.expect("checked"),
            data_dir: data_dir.expect("checked"),
            database_url: database_url.expect("checked"),
            database_pool_size: flags.database_pool_size,
            mission_check_every: wakeup::CHECK_EVERY,
            relay_check_every: relay::CHECK_EVERY,
            agent_binary: flags.agent_binary.clone().or_else(agent_binary_beside_exe),
            cli_binary: flags
                .cli_binary
                .clone()
                .or_else(|| std::env::current_exe().ok()),
            max_bundle_bytes: flags.max_bundle_bytes,
            bundle_store,
            aws: None,
            secret_key,
            tls,
            provider_dir: flags.provider_dir.clone(),
            github,
            previews: flags.previews.settings(),
        })
    }
}

fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}/launch.db", data_dir.display())
}

fn agent_binary_beside_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("launch-agent");
    candidate.is_file().then_some(candidate)
}

/// The `launch server` binary entry: validate, run until SIGINT/SIGTERM, map
/// the outcome to an exit code. Prints `launch server listening on http://…`.
pub async fn main(flags: ServerFlags) -> ExitCode {
    // Logs go to stderr (stdout carries only the listening line). If the
    // binary already installed a subscriber, that one stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    if let Some(ServerCommand::RotateKey(args)) = &flags.command {
        return rotate::main(&flags, args).await;
    }
    let config = match ServerConfig::from_flags(&flags) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(err) = prepare_data_dir(&config) {
        eprintln!("error: {err:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = oneshot::channel();
    let signals = wait_for_signal(shutdown.clone());
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let announce = async {
        if let Ok(addr) = ready_rx.await {
            println!("launch server listening on {scheme}://{addr}");
        }
    };
    let (result, (), ()) = tokio::join!(
        async {
            let result = run(config, shutdown.clone(), ready_tx).await;
            shutdown.cancel();
            result
        },
        announce,
        signals
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // A bundle store that does not answer is bad configuration,
            // found before any port is bound.
            if err.is::<bundle_store::BundleStoreError>() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers: stop the server with kill -9");
        shutdown.cancelled().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
        _ = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

/// Runs the control plane until `shutdown` fires, then drains connections for
/// up to 10 s. Sends the bound address on `ready` once it accepts connections.
pub async fn run(
    config: ServerConfig,
    shutdown: CancellationToken,
    ready: oneshot::Sender<SocketAddr>,
) -> anyhow::Result<()> {
    info!(?config, "starting the control plane");
    let (bundles_dir, _) = prepare_data_dir(&config)?;
    // Held until `run` returns: `launch server rotate-key` refuses to run
    // while it is, and so does a second server on the same data dir.
    let _lock = rotate::lock_data_dir(&config.data_dir)?;
    remove_partial_uploads(&bundles_dir);
    let bundles =
        bundle_store::BundleStore::open(&config.bundle_store, bundles_dir, config.aws.as_ref())
            .await?;
    let store = store::Store::open_with(&config.database_url, config.database_pool_size)
        .await
        .with_context(|| {
            format!(
                "open the database {}",
                store::redacted_url(&config.database_url)
            )
        })?;
    // Held until `run` returns, like the data dir lock: `rotate-key` on a
    // shared PostgreSQL database refuses while any replica holds it.
    let _replica = store
        .hold_replica_lock()
        .await
        .context("take the replica lock on the database")?;
    // SQLite has one control plane (the data dir lock): no session a crash
    // left open is open now. On PostgreSQL other replicas' sessions are.
    if store.engine() == store::Engine::Sqlite {
        store
            .end_all_sessions()
            .await
            .context("mark the agents' sessions of a previous run ended")?;
    }
    if rotate::finish_interrupted(&store, &config.data_dir).await? {
        warn!("finished a key rotation that was interrupted before it renamed secret.key.new");
    }
    let secret_box = secrets::SecretBox::load(config.secret_key, &config.data_dir)?;
    let key_origin = match config.secret_key {
        Some(_) => secrets::KEY_ENV.to_owned(),
        None => config
            .data_dir
            .join(secrets::KEY_FILE)
            .display()
            .to_string(),
    };
    rotate::claim_key(&store, &secret_box, &key_origin).await?;
    let admin_hash = ensure_admin_token(&store, &config.data_dir).await?;
    let (reporter, _reporting) =
        github::Reporter::start(&config.github, store.clone(), shutdown.clone())?;

    let state = Arc::new(state::State {
        store: store.clone(),
        hub: Arc::new(hub::Hub::default()),
        secrets: secret_box,
        data_dir: config.data_dir.clone(),
        bundles,
        admin_hash,
        max_bundle_bytes: config.max_bundle_bytes,
        agent_binary: config.agent_binary.clone(),
        cli_binary: config.cli_binary.clone(),
        shutdown: shutdown.clone(),
        revocations: authz::Revocations::default(),
        fleet: Default::default(),
        github: reporter.clone(),
        previews: config.previews.clone(),
    });
    let _idle_previews = tokio::spawn(previews::sweep_idle(state.clone()));
    let (relay_inbox, relay_notifications) = tokio::sync::mpsc::channel(relay::INBOX);
    let _wakeups = tokio::spawn(wakeup::run(
        state.clone(),
        config.mission_check_every,
        relay_inbox,
        shutdown.clone(),
    ));
    let _relay = tokio::spawn(relay::run(
        state.clone(),
        config.relay_check_every,
        relay_notifications,
        shutdown.clone(),
    ));

    // The control service behind its authorization layer: served to the
    // network and called in-process by the dashboard, the same value.
    let control = authz::Authorize::new(
        ControlServiceServer::new(control_service::Control::new(state.clone()))
            .max_decoding_message_size(launch_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(launch_proto::MAX_MESSAGE_BYTES),
        state.clone(),
    );
    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(
            AgentServiceServer::new(agent_service::Agents::new(state.clone()))
                .max_decoding_message_size(launch_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(launch_proto::MAX_MESSAGE_BYTES),
        )
        .add_service(control.clone());
    let app = routes
        .routes()
        .into_axum_router()
        .merge(http::router(state.clone()))
        .merge(dashboard::router(Arc::new(dashboard::Dash::new(
            state.clone(),
            control,
            config.tls.is_some(),
        ))))
        .merge(provider_mirror::router(Arc::new(
            provider_mirror::Mirror::new(config.provider_dir.clone()),
        )))
        .merge(github::webhook::router(Arc::new(
            github::webhook::Webhook {
                store: store.clone(),
                secret: config.github.webhook_secret.clone(),
                reporter,
                state: state.clone(),
            },
        )))
        .fallback(http::fallback);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "listen on {}: is another server running there? pick another with --listen",
                config.listen
            )
        })?;
    let addr = listener.local_addr().context("read the bound address")?;
    info!(%addr, tls = config.tls.is_some(), "listening");
    let _ = ready.send(addr);

    let drained = CancellationToken::new();
    let serve: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
        match config.tls.clone() {
            Some(tls_config) => Box::pin(tls::serve(listener, app, tls_config, shutdown.clone())),
            None => {
                // Small gRPC frames (acks, log batches) must not wait for Nagle.
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    if let Err(err) = tcp.set_nodelay(true) {
                        warn!(cause = %err, "cannot set TCP_NODELAY");
                    }
                });
                let serve = axum::serve(listener, app).with_graceful_shutdown({
                    let shutdown = shutdown.clone();
                    async move { shutdown.cancelled().await }
                });
                Box::pin(async move { serve.await })
            }
        };
    let serve = async {
        let result = serve.await;
        drained.cancel();
        result
    };
    let deadline = async {
        shutdown.cancelled().await;
        tokio::select! {
            _ = drained.cancelled() => {}
            _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
                warn!(seconds = DRAIN_TIMEOUT.as_secs(), "connections did not drain in time: closing them");
            }
        }
    };
    tokio::select! {
        result = serve => result.context("serve connections")?,
        () = deadline => {}
    }
    store.close().await;
    info!("control plane stopped");
    Ok(())
}

/// Creates the data dir (0700) and its bundles dir and loads (or creates) the
/// secret key: everything about the data dir that can be wrong, checked before
/// any port is bound.
fn prepare_data_dir(config: &ServerConfig) -> anyhow::Result<(PathBuf, secrets::SecretBox)> {
    private_file::create_private_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}: pick another with --data-dir",
            config.data_dir.display()
        )
    })?;
    let bundles_dir = config.data_dir.join("bundles");
    std::fs::create_dir_all(&bundles_dir).with_context(|| {
        format!(
            "cannot create {}: check the data directory's permissions",
            bundles_dir.display()
        )
    })?;
    let secret_box = secrets::SecretBox::load(config.secret_key, &config.data_dir)?;
    Ok((bundles_dir, secret_box))
}

/// Removes uploads a previous run left half-written (it stopped mid-deploy).
fn remove_partial_uploads(bundles_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(bundles_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".upload-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Creates the admin token at first start (printing it once to stderr) and
/// returns its hash. Of replicas starting together on one database, one
/// token wins; the others remove the file they wrote and use it.
async fn ensure_admin_token(store: &store::Store, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(hash) = store
        .setting("admin_token_hash")
        .await
        .context("read the admin token hash")?
    {
        return Ok(hash);
    }
    let token = tokens::mint(tokens::ADMIN_PREFIX);
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    private_file::write_private(&path, format!("{token}\n").as_bytes())
        .with_context(|| format!("write {}", path.display()))?;
    let hash = tokens::hash(&token);
    let stored = store
        .setting_or_insert("admin_token_hash", &hash)
        .await
        .context("store the admin token hash")?;
    if stored != hash {
        let _ = std::fs::remove_file(&path);
        return Ok(stored);
    }
    eprintln!("admin token: {token} (saved to {})", path.display());
    Ok(hash)
}
