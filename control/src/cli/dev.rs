//! `launch dev`: the whole path on one machine in one command. It runs the
//! control plane in this process, starts the `launch-agent` binary that sits
//! beside this executable as a child (a real separate process, as on a host),
//! deploys DIR through the same client code as `launch deploy --wait`, prints
//! the URL (`http://<service>.localhost:<port>/`, through the agent's front
//! door on a free loopback port) and follows the service's logs until Ctrl-C. State lives under the
//! data dir, so a second `launch dev` redeploys onto the warm agent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use launch_core::names::EnvironmentName;
use launch_proto::{CreateJoinTokenRequest, ServiceRef, StreamLogsRequest};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::deploy::{self, DeployArgs};
use super::{CliError, Global, exit};
use crate::server::{self, ADMIN_TOKEN_FILE, ServerConfig};

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The service directory to deploy
    #[arg(default_value = "examples/quickstart")]
    pub dir: PathBuf,
    /// Where the embedded control plane and the agent keep their state
    /// [default: ~/.local/share/launch/dev]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the embedded control plane
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// Environment to deploy into
    #[arg(long = "env", default_value = "dev")]
    pub environment: String,
    /// Service name [default: from launch.toml or the directory name]
    #[arg(long)]
    pub service: Option<String>,
    /// How long to wait for the first deploy to be healthy
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    pub timeout: Duration,
}

fn default_data_dir() -> Result<PathBuf, CliError> {
    let home = std::env::var_os("HOME")
        .ok_or_else(|| CliError::usage("HOME is not set: pass --data-dir"))?;
    Ok(PathBuf::from(home).join(".local/share/launch/dev"))
}

/// The `launch-agent` binary beside the running `launch`.
fn agent_binary() -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find the running executable: {e}")))?;
    let agent = exe.with_file_name("launch-agent");
    if agent.is_file() {
        Ok(agent)
    } else {
        Err(CliError::usage(format!(
            "{} is missing: build it with `cargo build --bins` (or run ./scripts/dev)",
            agent.display()
        )))
    }
}

pub async fn run(global: &Global, args: DevArgs) -> Result<u8, CliError> {
    if !args.dir.is_dir() {
        return Err(CliError::usage(format!(
            "{} is not a directory: run from the repository root or give the service directory",
            args.dir.display()
        )));
    }
    let service = deploy::service_name(&args.dir, args.service.as_deref())?;
    let environment = EnvironmentName::parse(&args.environment)
        .map_err(|e| CliError::usage(format!("--env: {e}")))?;
    let agent_bin = agent_binary()?;
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir()?,
    };
    let server_dir = data_dir.join("server");
    let agent_dir = data_dir.join("agent");
    std::fs::create_dir_all(&agent_dir)
        .map_err(|e| CliError::usage(format!("cannot create {}: {e}", agent_dir.display())))?;

    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let config = ServerConfig::for_data_dir(&server_dir, args.listen);
    let server_task = tokio::spawn(server::run(config, shutdown.clone(), ready_tx));
    let addr = match ready_rx.await {
        Ok(addr) => addr,
        Err(_) => {
            let cause = match server_task.await {
                Ok(Err(err)) => format!("{err:#}"),
                Ok(Ok(())) => "it stopped".to_owned(),
                Err(err) => err.to_string(),
            };
            return Err(CliError::usage(format!(
                "the embedded control plane did not start ({cause}): is {} already in use? pass --listen 127.0.0.1:0",
                args.listen
            )));
        }
    };
    let url = format!("http://{addr}");
    eprintln!(
        "control plane listening on {url} (data in {})",
        data_dir.display()
    );

    let result = session(
        global,
        &args,
        &url,
        &server_dir,
        &agent_dir,
        &agent_bin,
        &service,
        &environment,
    )
    .await;

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), server_task).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn session(
    global: &Global,
    args: &DevArgs,
    url: &str,
    server_dir: &Path,
    agent_dir: &Path,
    agent_bin: &Path,
    service: &launch_core::names::ServiceName,
    environment: &EnvironmentName,
) -> Result<u8, CliError> {
    let token = std::fs::read_to_string(server_dir.join(ADMIN_TOKEN_FILE))
        .map_err(|e| CliError::failed(format!("cannot read the admin token: {e}")))?;
    let mut client = super::client::connect_with(url, token.trim(), None).await?;
    let target = Some(ServiceRef {
        service: service.to_string(),
        environment: environment.to_string(),
    });
    let join = client
        .create_join_token(CreateJoinTokenRequest {
            target: target.clone(),
            ttl_secs: 600,
        })
        .await
        .map_err(|s| CliError::from_status(&s, url))?
        .into_inner();

    let log_path = agent_dir.join("agent.log");
    let mut agent = start_agent(
        agent_bin,
        url,
        &join.join_token,
        service,
        environment,
        agent_dir,
        &log_path,
    )?;
    eprintln!("agent started (logs in {})", log_path.display());

    let deploy_args = DeployArgs {
        dir: args.dir.clone(),
        service: Some(service.to_string()),
        environment: environment.to_string(),
        git_ref: Some("dev".to_owned()),
        secret_env: Vec::new(),
        wait: true,
        timeout: args.timeout,
        bundle: None,
        include_env: false,
        repo: None,
        pr: None,
        preview: None,
    };
    let outcome = tokio::select! {
        outcome = deploy::deploy_with(&mut client, url, global.output, &deploy_args) => outcome,
        status = agent.wait() => Err(CliError::failed(format!(
            "the agent exited ({}) before the deploy finished: see {}",
            status.map(|s| s.to_string()).unwrap_or_default(),
            log_path.display()
        ))),
        _ = tokio::signal::ctrl_c() => Err(CliError::failed("interrupted")),
    };
    let code = match outcome {
        Ok(outcome) if outcome.exit_code() == exit::OK => {
            let shown = if outcome.url.is_empty() {
                outcome.release_id.clone()
            } else {
                outcome.url.clone()
            };
            println!("ready: {shown}");
            eprintln!("following logs; Ctrl-C to stop");
            // From the last line `deploy` printed: nothing twice.
            let request = StreamLogsRequest {
                target,
                mission_id: outcome.mission_id.clone(),
                since_seq: outcome.last_seq,
                follow: true,
            };
            tokio::select! {
                result = super::logs::follow(&mut client, url, global.output, request) => result.map(|_| exit::OK),
                _ = tokio::signal::ctrl_c() => Ok(exit::OK),
            }
        }
        Ok(outcome) => Ok(outcome.exit_code()),
        Err(err) => Err(err),
    };
    stop_agent(&mut agent).await;
    eprintln!(
        "stopped the agent and the control plane; the service keeps running: stop it with `docker compose -p {service}-{environment} down` (or docker-compose)"
    );
    code
}

fn start_agent(
    agent_bin: &Path,
    url: &str,
    join_token: &str,
    service: &launch_core::names::ServiceName,
    environment: &EnvironmentName,
    agent_dir: &Path,
    log_path: &Path,
) -> Result<Child, CliError> {
    let log = std::fs::File::create(log_path)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| CliError::failed(format!("cannot open {}: {e}", log_path.display())))?;
    let (http, https) = (free_loopback_port()?, free_loopback_port()?);
    Command::new(agent_bin)
        .arg("run")
        .arg("--control-url")
        .arg(url)
        // The front door on unprivileged loopback ports, answering
        // <service>.localhost (browsers and curl resolve *.localhost to loopback).
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{http}"))
        .arg("--https-listen")
        .arg(format!("127.0.0.1:{https}"))
        .arg("--ingress-hosts")
        .arg(format!("{service}.localhost"))
        .arg("--labels")
        .arg(format!("service-name={service},environment={environment}"))
        .arg("--data-dir")
        .arg(agent_dir)
        .arg("--advertise-host")
        .arg("127.0.0.1")
        // The join token goes through the environment, not argv, so `ps` never shows it.
        .env("LAUNCH_AGENT_JOIN_TOKEN", join_token)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CliError::failed(format!("cannot start {}: {e}", agent_bin.display())))
}

/// A loopback port nothing listens on right now.
fn free_loopback_port() -> Result<u16, CliError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| CliError::failed(format!("cannot find a free loopback port: {e}")))
}

async fn stop_agent(agent: &mut Child) {
    if let Some(pid) = agent.id() {
        // SIGTERM first so the agent can close its session cleanly.
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        if tokio::time::timeout(Duration::from_secs(10), agent.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = agent.kill().await;
}
