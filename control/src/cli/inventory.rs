//! Read-only views of the control plane: `status`, `services`, `agents`
//! (and `agents revoke`), `releases`. Text is a table for people; JSON is an
//! object with one array per kind for scripts.

use launch_proto::{
    ListAgentsRequest, ListReleasesRequest, ListServicesRequest, ReleaseState, RevokeAgentRequest,
    ServiceRef, StatusRequest,
};
use serde_json::json;

use super::client;
use super::output::{self, or_dash, table};
use super::{CliError, Global, Output, exit};

#[derive(Debug, clap::Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub action: Option<AgentsAction>,
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentsAction {
    /// Revoke an agent's token: it is disconnected and can never reconnect
    Revoke { agent_id: String },
    /// Replace connected agents' binary with the one this control plane serves
    Upgrade(super::missions::UpgradeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReleasesArgs {
    pub service: String,
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    /// Also the releases of retired incarnations of the service (for audit;
    /// `launch logs --mission` shows their lines)
    #[arg(long)]
    pub all: bool,
}

fn services_table(services: &[launch_proto::ServiceInfo]) {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            let target = s.target.clone().unwrap_or_default();
            vec![
                target.service,
                target.environment,
                or_dash(&s.current_release_id),
                or_dash(if s.last_mission_id.is_empty() {
                    ""
                } else {
                    output::mission_state(s.last_mission_state)
                }),
                s.agents_connected.to_string(),
                or_dash(&s.url),
                output::tags_text(&s.tags),
                s.note.clone(),
            ]
        })
        .collect();
    table(
        &[
            "SERVICE",
            "ENV",
            "CURRENT",
            "LAST MISSION",
            "AGENTS",
            "URL",
            "TAGS",
            "NOTE",
        ],
        &rows,
    );
    for s in services.iter().filter(|s| !s.health.is_empty()) {
        let target = s.target.clone().unwrap_or_default();
        println!("{}/{} {}", target.service, target.environment, s.health);
    }
    super::routes::print(services);
}

fn agents_table(agents: &[launch_proto::AgentInfo]) {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let label = |k: &str| a.labels.get(k).cloned().unwrap_or_default();
            let state = if a.revoked {
                "revoked"
            } else if a.connected {
                "connected"
            } else {
                "offline"
            };
            vec![
                a.agent_id.clone(),
                label("service-name"),
                label("environment"),
                or_dash(&a.hostname),
                state.to_owned(),
                or_dash(&a.version),
            ]
        })
        .collect();
    table(
        &["AGENT", "SERVICE", "ENV", "HOST", "STATE", "VERSION"],
        &rows,
    );
}

pub async fn status(global: &Global) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let status = client
        .status(StatusRequest {})
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner();
    match global.output {
        Output::Json => println!(
            "{}",
            json!({
                "version": status.version,
                "services": status.services.iter().map(output::service_json).collect::<Vec<_>>(),
                "agents": status.agents.iter().map(output::agent_json).collect::<Vec<_>>(),
            })
        ),
        Output::Text => {
            println!("control plane {} at {}\n", status.version, global.addr);
            services_table(&status.services);
            println!();
            agents_table(&status.agents);
        }
    }
    Ok(exit::OK)
}

/// `launch services [--tag K[=V]]…`: every service, or those with all the tags.
pub async fn services(global: &Global, tags: &[String]) -> Result<u8, CliError> {
    for tag in tags {
        launch_core::tags::TagFilter::parse(tag)
            .map_err(|e| CliError::usage(format!("--tag {tag}: {e}")))?;
    }
    let mut client = client::connect(global).await?;
    let services = client
        .list_services(ListServicesRequest {
            tags: tags.to_vec(),
            ..Default::default()
        })
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner()
        .services;
    match global.output {
        Output::Json => println!(
            "{}",
            json!({ "services": services.iter().map(output::service_json).collect::<Vec<_>>() })
        ),
        Output::Text => services_table(&services),
    }
    Ok(exit::OK)
}

pub async fn agents(global: &Global, args: AgentsArgs) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    if let Some(AgentsAction::Upgrade(args)) = args.action {
        return super::missions::upgrade_agents(global, &mut client, args).await;
    }
    if let Some(AgentsAction::Revoke { agent_id }) = args.action {
        client
            .revoke_agent(RevokeAgentRequest {
                agent_id: agent_id.clone(),
            })
            .await
            .map_err(|s| CliError::from_status(&s, &global.addr))?;
        match global.output {
            Output::Json => println!("{}", json!({ "agent_id": agent_id, "revoked": true })),
            Output::Text => println!("revoked {agent_id}"),
        }
        return Ok(exit::OK);
    }
    let listed = client
        .list_agents(ListAgentsRequest {})
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner();
    let agents = listed.agents;
    match global.output {
        Output::Json => println!(
            "{}",
            json!({
                "agents": agents.iter().map(output::agent_json).collect::<Vec<_>>(),
                "served_version": listed.served_version,
            })
        ),
        Output::Text => {
            agents_table(&agents);
            if !listed.served_version.is_empty() {
                println!(
                    "\nthis control plane serves launch-agent {} (`launch agents upgrade` installs it)",
                    listed.served_version
                );
            }
        }
    }
    Ok(exit::OK)
}

pub async fn releases(global: &Global, args: ReleasesArgs) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let releases = client
        .list_releases(ListReleasesRequest {
            target: Some(ServiceRef {
                service: args.service,
                environment: args.environment,
            }),
            include_retired: args.all,
        })
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner()
        .releases;
    match global.output {
        Output::Json => println!(
            "{}",
            serde_json::Value::Array(releases.iter().map(output::release_json).collect())
        ),
        Output::Text => {
            let rows: Vec<Vec<String>> = releases
                .iter()
                .map(|r| {
                    vec![
                        format!("{}{}", if r.current { "* " } else { "  " }, r.release_id),
                        if r.retired {
                            "retired".to_owned()
                        } else {
                            ReleaseState::try_from(r.state)
                                .unwrap_or_default()
                                .label()
                                .to_owned()
                        },
                        or_dash(&r.git_ref),
                        match (r.repo.as_str(), r.pr) {
                            ("", _) => "-".to_owned(),
                            (repo, 0) => repo.to_owned(),
                            (repo, pr) => format!("{repo}#{pr}"),
                        },
                        r.bundle_sha256.chars().take(12).collect(),
                        r.mission_id.clone(),
                    ]
                })
                .collect();
            table(
                &["  RELEASE", "STATE", "REF", "SOURCE", "SHA256", "MISSION"],
                &rows,
            );
        }
    }
    Ok(exit::OK)
}
