//! `launch services allow|disallow|allowances`: the host-policy allowances
//! an admin grants a service in an environment (what its compose file may
//! ask of the host beyond the default policy, e.g. `host-network` or
//! `bind:/srv/data`). The control plane parses and records them; the agent
//! enforces them at the next deploy.

use launch_proto::{AllowServiceRequest, AllowancesResponse, ListAllowancesRequest, ServiceRef};
use serde_json::json;

use super::client;
use super::output::table;
use super::{CliError, Global, Output, exit};

#[derive(Debug, clap::Args)]
pub struct ServicesArgs {
    #[command(subcommand)]
    pub command: Option<ServicesCommand>,
    /// Only services with this tag: KEY (any value) or KEY=VALUE; repeat for
    /// all of several
    #[arg(long = "tag", value_name = "KEY[=VALUE]")]
    pub tags: Vec<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ServicesCommand {
    #[command(flatten)]
    Policy(PolicyCommand),
    /// Set tags on SERVICE (keys Terraform or launch.toml set are theirs to change)
    Tag(super::tags::TagArgs),
    /// Remove tags from SERVICE by key
    Untag(super::tags::UntagArgs),
}

/// The host-policy subcommands of `launch services`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Allow SERVICE's compose file keys the host policy refuses by default
    /// (privileged, host-network, host-pid, host-ipc, host-uts, host-userns,
    /// cap-add[:CAP], devices, security-opt, sysctls, docker-socket, bind:/PATH)
    Allow {
        service: String,
        #[arg(long = "env", default_value = "prod")]
        environment: String,
        #[arg(required = true, value_name = "ALLOWANCE")]
        allowances: Vec<String>,
    },
    /// Take allowances back
    Disallow {
        service: String,
        #[arg(long = "env", default_value = "prod")]
        environment: String,
        #[arg(required = true, value_name = "ALLOWANCE")]
        allowances: Vec<String>,
    },
    /// List SERVICE's allowances, with who granted them and when
    Allowances {
        service: String,
        #[arg(long = "env", default_value = "prod")]
        environment: String,
    },
}

pub async fn run(global: &Global, command: PolicyCommand) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let target = |service: &str, environment: &str| {
        Some(ServiceRef {
            service: service.to_owned(),
            environment: environment.to_owned(),
        })
    };
    let response = match command {
        PolicyCommand::Allow {
            service,
            environment,
            allowances,
        } => {
            client
                .allow_service(AllowServiceRequest {
                    target: target(&service, &environment),
                    allowances,
                })
                .await
        }
        PolicyCommand::Disallow {
            service,
            environment,
            allowances,
        } => {
            client
                .disallow_service(AllowServiceRequest {
                    target: target(&service, &environment),
                    allowances,
                })
                .await
        }
        PolicyCommand::Allowances {
            service,
            environment,
        } => {
            client
                .list_allowances(ListAllowancesRequest {
                    target: target(&service, &environment),
                })
                .await
        }
    }
    .map_err(|s| CliError::from_status(&s, &global.addr))?
    .into_inner();
    show(&response, global.output);
    Ok(exit::OK)
}

fn show(response: &AllowancesResponse, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            json!({ "allowances": response.allowances.iter().map(|a| json!({
                "allowance": a.allowance,
                "granted_by": a.granted_by,
                "granted_unix_ms": a.granted_unix_ms,
            })).collect::<Vec<_>>() })
        ),
        Output::Text => table(
            &["ALLOWANCE", "GRANTED BY", "GRANTED (UNIX MS)"],
            &response
                .allowances
                .iter()
                .map(|a| {
                    vec![
                        a.allowance.clone(),
                        a.granted_by.clone(),
                        a.granted_unix_ms.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}
