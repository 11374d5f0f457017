//! `launch previews` (the live pull-request previews: URL, release, state,
//! age, last deploy, git ref) and `launch previews rm NAME` (queue their
//! teardown). A preview is deployed with `launch deploy --preview NAME`.

use launch_core::names::{EnvironmentName, PreviewName, ServiceName};
use launch_proto::{ListPreviewsRequest, PreviewInfo, RemovePreviewRequest, ServiceRef};
use serde_json::{Value, json};

use super::client;
use super::output::{self, or_dash, table};
use super::{CliError, Global, Output, exit};

#[derive(Debug, clap::Args)]
pub struct PreviewsArgs {
    /// Only this service's previews [default: every service's]
    #[arg(long)]
    pub service: Option<String>,
    /// The environment the previews sit beside
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    #[command(subcommand)]
    pub command: Option<PreviewsCommand>,
}

#[derive(Debug, clap::Subcommand)]
pub enum PreviewsCommand {
    /// Tear a preview down (of --service, else of every service that has it)
    Rm(RmArgs),
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The preview, e.g. pr-123
    pub preview: String,
    #[arg(long, conflicts_with = "dir")]
    pub service: Option<String>,
    /// The service directory whose service it is (its name as `launch deploy DIR` finds it)
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
}

fn target(service: Option<&str>, environment: &str) -> Result<Option<ServiceRef>, CliError> {
    let Some(service) = service else {
        return Ok(None);
    };
    ServiceName::parse(service).map_err(|e| CliError::usage(format!("--service: {e}")))?;
    EnvironmentName::parse(environment).map_err(|e| CliError::usage(format!("--env: {e}")))?;
    Ok(Some(ServiceRef {
        service: service.to_owned(),
        environment: environment.to_owned(),
    }))
}

pub async fn run(global: &Global, args: PreviewsArgs) -> Result<u8, CliError> {
    match args.command {
        Some(PreviewsCommand::Rm(rm)) => remove(global, rm).await,
        None => list(global, args.service.as_deref(), &args.environment).await,
    }
}

async fn list(global: &Global, service: Option<&str>, environment: &str) -> Result<u8, CliError> {
    let target = target(service, environment)?;
    let mut client = client::connect(global).await?;
    let previews = client
        .list_previews(ListPreviewsRequest { target })
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner()
        .previews;
    match global.output {
        Output::Json => println!(
            "{}",
            Value::Array(previews.iter().map(preview_json).collect())
        ),
        Output::Text => {
            let rows: Vec<Vec<String>> = previews
                .iter()
                .map(|p| {
                    let target = p.target.clone().unwrap_or_default();
                    vec![
                        format!("{}/{}", target.service, target.environment),
                        p.preview.clone(),
                        or_dash(&p.url),
                        p.release_id.clone(),
                        output::mission_state(p.state).to_owned(),
                        rough(p.age_ms),
                        format!("{} ago", rough(p.idle_ms)),
                        or_dash(&p.git_ref),
                    ]
                })
                .collect();
            table(
                &[
                    "SERVICE",
                    "PREVIEW",
                    "URL",
                    "RELEASE",
                    "STATE",
                    "AGE",
                    "LAST DEPLOY",
                    "REF",
                ],
                &rows,
            );
        }
    }
    Ok(exit::OK)
}

async fn remove(global: &Global, args: RmArgs) -> Result<u8, CliError> {
    PreviewName::parse(&args.preview).map_err(|e| CliError::usage(e.to_string()))?;
    let service = match &args.dir {
        Some(dir) => Some(super::deploy::service_name(dir, None)?.to_string()),
        None => args.service.clone(),
    };
    let target = target(service.as_deref(), &args.environment)?;
    let mut client = client::connect(global).await?;
    let response = client
        .remove_preview(RemovePreviewRequest {
            target,
            preview: args.preview.clone(),
        })
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner();
    match global.output {
        Output::Json => println!(
            "{}",
            json!({
                "preview": args.preview,
                "removed": response.removed.iter().map(preview_json).collect::<Vec<_>>(),
                "mission_ids": response.mission_ids,
            })
        ),
        Output::Text if response.removed.is_empty() => {
            println!("no live preview {}: nothing to remove", args.preview)
        }
        Output::Text => {
            for (preview, mission_id) in response.removed.iter().zip(&response.mission_ids) {
                let target = preview.target.clone().unwrap_or_default();
                println!(
                    "{}/{} preview {}: teardown queued (mission {mission_id})",
                    target.service, target.environment, preview.preview
                );
            }
        }
    }
    Ok(exit::OK)
}

fn preview_json(preview: &PreviewInfo) -> Value {
    let target = preview.target.clone().unwrap_or_default();
    json!({
        "service": target.service,
        "environment": target.environment,
        "preview": preview.preview,
        "url": preview.url,
        "release_id": preview.release_id,
        "state": output::mission_state(preview.state),
        "git_ref": preview.git_ref,
        "repo": preview.repo,
        "pr": preview.pr,
        "created_unix_ms": preview.created_unix_ms,
        "last_deploy_unix_ms": preview.last_deploy_unix_ms,
        "age_ms": preview.age_ms,
        "idle_ms": preview.idle_ms,
    })
}

/// `3m`: a rough duration for humans (the JSON has the exact one).
fn rough(ms: u64) -> String {
    let secs = ms / 1000;
    let rounded = match secs {
        0..60 => secs,
        60..3600 => secs / 60 * 60,
        3600..86_400 => secs / 3600 * 3600,
        _ => secs / 86_400 * 86_400,
    };
    humantime::format_duration(std::time::Duration::from_secs(rounded)).to_string()
}
