//! The `launch-agent` binary: parses flags, validates the config (exit 64 on
//! any problem, before any network), sets up tracing on stderr and runs the
//! agent until SIGINT or SIGTERM.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use launch_agent::config::{Config, RunArgs};
use tokio_util::sync::CancellationToken;

const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "launch-agent",
    version,
    about = "Runs Launch missions on this host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register (once) and run missions for this host's service
    Run(RunArgs),
    /// Write /etc/launch/agent.toml and a systemd unit, then enable and start it
    Install(launch_agent::install::InstallArgs),
    /// Stop and remove the systemd unit and config (services keep running unless --stop-services)
    Uninstall(launch_agent::install::UninstallArgs),
    /// Started by a self-upgrading agent: puts the old binary back if the new
    /// one does not reconnect in time
    #[command(hide = true)]
    UpgradeWatchdog {
        #[arg(long)]
        data_dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    // SAFETY: no other thread runs yet.
    unsafe { launch_agent::take_inherited_listeners() };
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Run(args) => args,
        Command::Install(args) => return install(&args),
        Command::Uninstall(args) => return uninstall(&args),
        Command::UpgradeWatchdog { data_dir } => {
            return match launch_agent::upgrade_watchdog(&data_dir) {
                Ok(outcome) => {
                    eprintln!("launch-agent upgrade watchdog: {outcome}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("launch-agent upgrade watchdog: error: {err}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let config = match Config::load(&args) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LAUNCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    tracing::info!(config = ?config, "starting launch-agent {}", launch_agent::VERSION);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
        let result = launch_agent::run(config, shutdown).await;
        signals.abort();
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received: stopping (running services keep running)");
    shutdown.cancel();
}

fn install(args: &launch_agent::install::InstallArgs) -> ExitCode {
    use launch_agent::install::{InstallError, Outcome, UNIT_NAME};
    match launch_agent::install::install(args) {
        Ok(outcome) => {
            let started = if args.no_start {
                "not started (--no-start)"
            } else {
                "enabled and running"
            };
            let what = if outcome == Outcome::Unchanged {
                "already installed"
            } else {
                "installed"
            };
            println!("launch-agent {what}: {} ({started})", UNIT_NAME);
            ExitCode::SUCCESS
        }
        Err(err @ (InstallError::Invalid(_) | InstallError::Registered { .. })) => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn uninstall(args: &launch_agent::install::UninstallArgs) -> ExitCode {
    match launch_agent::install::uninstall(args) {
        Ok(()) => {
            println!("launch-agent uninstalled");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
