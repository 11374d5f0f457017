//! The `launch` CLI: every client command and `launch dev`. Commands talk to
//! the control plane only through `launch-proto`'s ControlService, so they
//! behave the same against a remote server and the one `launch dev` embeds.
//! Outcomes map to exit codes a CI job can branch on (see [`exit`]).
//!
//! # Layout
//! - [`error`]: `CliError`, the one failure type, and the exit codes.
//! - `client`: connecting with the bearer token.
//! - `deploy`: `deploy`, `rollback` and waiting on a mission.
//! - `missions`: `restart`, `retire`, `cancel`.
//! - `check`: the compose check `deploy` runs before packing.
//! - `logs`: `logs [-f]`.
//! - `inventory`: `status`, `services`, `agents`, `releases`.
//! - `access`: `token create` (join tokens), `secrets set|list|rm`.
//! - `tokens`: scoped API tokens: `token create --scope`, `token list|revoke`.
//! - `provider`: `provider install|package`, the Terraform provider without a registry.
//! - `dev`: `launch dev`, an embedded server plus a local agent.
//! - `output`: text and JSON rendering shared by the commands.
//! - `routes`: a service's front door (routes, release, certificates) in `status`.
//! - `policy`: `services allow|disallow|allowances`, host-policy allowances.
//! - `previews`: `previews [--service S]`, `previews rm NAME`.
//! - `tags`: `services tag|untag`, a service's tags set by hand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

mod access;
mod check;
mod client;
mod deploy;
mod dev;
pub mod error;
mod inventory;
mod logs;
mod missions;
mod output;
mod policy;
mod previews;
mod provider;
mod routes;
mod tags;
mod tokens;

pub use error::{CliError, exit};

#[derive(Debug, Parser)]
#[command(
    name = "launch",
    version,
    about = "From a compose directory to a live, healthy service",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every client command takes.
#[derive(Clone, Debug, clap::Args)]
pub struct Global {
    /// Control plane address; several replicas comma-separated, tried in turn
    #[arg(
        long,
        global = true,
        env = "LAUNCH_ADDR",
        default_value = "http://127.0.0.1:7400"
    )]
    pub addr: String,
    /// API or admin token
    #[arg(long, global = true, env = "LAUNCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the token from this file (e.g. <data-dir>/admin.token)
    #[arg(long, global = true, env = "LAUNCH_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// PEM CA certificate to trust for an https:// control plane
    /// [default: the system's roots]
    #[arg(long, global = true, env = "LAUNCH_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane
    Server(crate::server::ServerFlags),
    /// Run an embedded control plane and a local agent, deploy DIR, follow its logs
    Dev(dev::DevArgs),
    /// Upload a service directory and deploy it
    Deploy(deploy::DeployArgs),
    /// Go back to an earlier release
    Rollback(deploy::RollbackArgs),
    /// Restart a service's running release on its host
    Restart(missions::ServiceMissionArgs),
    /// Take a service down on its host (admin; `launch deploy` brings it back)
    Retire(missions::ServiceMissionArgs),
    /// Stop a queued or running mission; a cancelled deploy leaves the previous release serving
    Cancel(missions::CancelArgs),
    /// Show a service's log lines
    Logs(logs::LogsArgs),
    /// Services and agents at a glance
    Status,
    /// List services, or manage their host-policy allowances
    Services(policy::ServicesArgs),
    /// List agents, or revoke one
    Agents(inventory::AgentsArgs),
    /// List a service's releases, newest first
    Releases(inventory::ReleasesArgs),
    /// List pull-request previews, or remove one
    Previews(previews::PreviewsArgs),
    /// Join tokens for new hosts, and scoped API tokens
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// A service's secrets (values are write-only)
    #[command(subcommand)]
    Secrets(access::SecretsCommand),
    /// The Terraform provider without a registry: a filesystem mirror or release artifacts
    #[command(subcommand)]
    Provider(provider::ProviderCommand),
}

/// Parses the command line (`main` and the tests go through here).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    let matches = command().try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// The client flags of [`Global`]: clap id and flag.
const CLIENT_FLAGS: [(&str, &str); 5] = [
    ("addr", "addr"),
    ("token", "token"),
    ("token_file", "token-file"),
    ("output", "output"),
    ("ca_cert", "ca-cert"),
];

/// The `launch` command: [`Global`]'s flags reach every client command
/// (before or after its name) but not `launch server`, whose help lists only
/// its own flags. Clap propagates a global flag to every subcommand that has
/// no argument of that id, so `server` gets a hidden one of each that
/// refuses with what to do instead.
fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().mut_subcommand("server", |server| {
        CLIENT_FLAGS.iter().fold(server, |server, &(id, flag)| {
            server.arg(clap::Arg::new(id).long(flag).hide(true).value_parser(
                move |_: &str| -> Result<String, String> {
                    Err(format!(
                        "--{flag} is a client flag (launch deploy, status, …): `launch server --help` lists the server's flags"
                    ))
                },
            ))
        })
    })
}

/// Parses a duration such as `10m`, `90s` or `1h`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(value).map_err(|e| format!("{e}; write e.g. 90s, 10m or 1h"))?;
    if duration.is_zero() {
        return Err("must be longer than zero; write e.g. 90s, 10m or 1h".to_owned());
    }
    Ok(duration)
}

/// Runs one client command and turns its outcome into the process exit code.
pub async fn main(global: Global, command: Command) -> ExitCode {
    match run(global, command).await {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}

async fn run(global: Global, command: Command) -> Result<u8, CliError> {
    match command {
        Command::Server(_) => unreachable!("`launch server` is dispatched by main"),
        Command::Dev(args) => dev::run(&global, args).await,
        Command::Deploy(args) => deploy::deploy(&global, args).await,
        Command::Rollback(args) => deploy::rollback(&global, args).await,
        Command::Restart(args) => missions::service_mission(&global, args, false).await,
        Command::Retire(args) => missions::service_mission(&global, args, true).await,
        Command::Cancel(args) => missions::cancel(&global, args).await,
        Command::Logs(args) => logs::run(&global, args).await,
        Command::Status => inventory::status(&global).await,
        Command::Services(args) => match args.command {
            None => inventory::services(&global, &args.tags).await,
            Some(policy::ServicesCommand::Policy(command)) => policy::run(&global, command).await,
            Some(policy::ServicesCommand::Tag(args)) => tags::tag(&global, args).await,
            Some(policy::ServicesCommand::Untag(args)) => tags::untag(&global, args).await,
        },
        Command::Agents(args) => inventory::agents(&global, args).await,
        Command::Releases(args) => inventory::releases(&global, args).await,
        Command::Previews(args) => previews::run(&global, args).await,
        Command::Token(command) => access::token(&global, command).await,
        Command::Secrets(command) => access::secrets(&global, command).await,
        Command::Provider(command) => provider::run(&global, command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_refuse_zero_or_garbage() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(parse_duration("soon").unwrap_err().contains("write e.g."));
    }

    /// `launch ARGS --help`, as printed.
    fn help(args: &[&str]) -> String {
        let mut argv = vec!["launch"];
        argv.extend_from_slice(args);
        argv.push("--help");
        match parse_from(argv) {
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.to_string(),
            other => panic!("{args:?} --help did not print help: {other:?}"),
        }
    }

    #[test]
    fn server_help_shows_only_server_flags() {
        let server = help(&["server"]);
        assert!(server.contains("--listen"), "{server}");
        assert!(server.contains("--data-dir"), "{server}");
        for client_only in ["--addr", "--token", "--token-file", "--output", "--ca-cert"] {
            assert!(
                !server.contains(client_only),
                "`launch server --help` lists the client flag {client_only}:\n{server}"
            );
        }
        // Client commands still take them, before or after their name.
        for args in [&["deploy"][..], &["status"], &["services", "allow"]] {
            let text = help(args);
            assert!(
                text.contains("--addr") && text.contains("--ca-cert"),
                "{text}"
            );
        }
        let err = parse_from(["launch", "server", "--addr", "http://x:1"]).unwrap_err();
        assert!(
            err.to_string().contains("--addr") && err.to_string().contains("client"),
            "{err}"
        );
        parse_from(["launch", "--addr", "http://x:1", "status"]).unwrap();
        parse_from([
            "launch",
            "status",
            "--addr",
            "http://x:1",
            "--output",
            "json",
        ])
        .unwrap();
    }

    #[test]
    fn every_documented_command_parses() {
        let cases: &[&[&str]] = &[
            &[
                "launch",
                "deploy",
                "dir",
                "--service",
                "s",
                "--env",
                "e",
                "--secret-env",
                "A",
                "--wait",
                "--timeout",
                "2m",
            ],
            &["launch", "deploy", "dir", "--bundle", "b.tar.gz"],
            &["launch", "logs", "s", "--env", "e", "-f", "--since", "3"],
            &["launch", "status", "--output", "json"],
            &["launch", "restart", "s", "--env", "e", "--wait"],
            &["launch", "retire", "s", "--env", "e"],
            &["launch", "cancel", "m-1", "--timeout", "1m"],
            &[
                "launch",
                "agents",
                "upgrade",
                "--service",
                "web-*",
                "--env",
                "prod",
                "--canary",
                "1",
            ],
            &["launch", "services"],
            &[
                "launch",
                "services",
                "allow",
                "hello",
                "--env",
                "prod",
                "host-network",
                "bind:/srv/data",
            ],
            &["launch", "services", "disallow", "hello", "docker-socket"],
            &["launch", "services", "allowances", "hello"],
            &[
                "launch",
                "services",
                "--tag",
                "team=platform",
                "--tag",
                "tier",
            ],
            &[
                "launch",
                "services",
                "tag",
                "hello",
                "--env",
                "e",
                "team=platform",
                "tier=1",
            ],
            &["launch", "services", "untag", "hello", "team", "tier"],
            &["launch", "agents"],
            &["launch", "agents", "revoke", "a-1"],
            &["launch", "releases", "s", "--env", "e"],
            &["launch", "deploy", "dir", "--preview", "pr-1", "--wait"],
            &["launch", "previews", "--service", "s", "--output", "json"],
            &[
                "launch",
                "previews",
                "rm",
                "pr-1",
                "--service",
                "s",
                "--env",
                "e",
            ],
            &["launch", "previews", "rm", "pr-1", "--dir", "services/s"],
            &[
                "launch",
                "server",
                "--preview-cap",
                "3",
                "--preview-ttl",
                "2d",
            ],
            &["launch", "rollback", "s", "--to", "r-1", "--wait"],
            &[
                "launch",
                "token",
                "create",
                "--service",
                "s",
                "--env",
                "e",
                "--ttl",
                "1h",
            ],
            &["launch", "secrets", "set", "s", "KEY", "--env", "e"],
            &["launch", "secrets", "list", "s"],
            &["launch", "secrets", "rm", "s", "KEY"],
            &["launch", "dev"],
            &[
                "launch",
                "server",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
            &["launch", "server", "rotate-key", "--data-dir", "d"],
            &["launch", "server", "--data-dir", "d", "rotate-key"],
            &[
                "launch",
                "server",
                "rotate-key",
                "--new-key-file",
                "new.key",
            ],
            &[
                "launch",
                "--addr",
                "http://x:1",
                "--token",
                "t",
                "--ca-cert",
                "ca.pem",
                "services",
            ],
            &["launch", "server", "--listen", "127.0.0.1:0"],
        ];
        for args in cases {
            parse_from(*args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }
}
