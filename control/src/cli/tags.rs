//! `launch services tag SERVICE key=value…` and `launch services untag
//! SERVICE key…`: the tags a person sets by hand. Every tag is checked here
//! with `launch_core::tags` before anything is sent (bad input: exit 2,
//! nothing written); keys the provider's `tags` or the deployed launch.toml
//! `[tags]` own are refused by the control plane, which names where to
//! change them instead.

use launch_proto::{ServiceInfo, ServiceRef, SetServiceTagsRequest};
use serde_json::json;

use super::client;
use super::output;
use super::{CliError, Global, Output, exit};

#[derive(Debug, clap::Args)]
pub struct TagArgs {
    pub service: String,
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    /// Tags to set, e.g. team=platform
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct UntagArgs {
    pub service: String,
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    /// Keys of the tags to remove
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
}

pub async fn tag(global: &Global, args: TagArgs) -> Result<u8, CliError> {
    let set = args
        .tags
        .iter()
        .map(|text| launch_core::tags::parse_assignment(text))
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::usage(format!("{e}; nothing was changed")))?;
    send(global, &args.service, &args.environment, set, Vec::new()).await
}

pub async fn untag(global: &Global, args: UntagArgs) -> Result<u8, CliError> {
    for key in &args.keys {
        launch_core::tags::check_key(key)
            .map_err(|e| CliError::usage(format!("{e}; nothing was changed")))?;
    }
    send(
        global,
        &args.service,
        &args.environment,
        Default::default(),
        args.keys,
    )
    .await
}

async fn send(
    global: &Global,
    service: &str,
    environment: &str,
    set: std::collections::HashMap<String, String>,
    remove: Vec<String>,
) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let info = client
        .set_service_tags(SetServiceTagsRequest {
            target: Some(ServiceRef {
                service: service.to_owned(),
                environment: environment.to_owned(),
            }),
            set,
            remove,
        })
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner();
    show(&info, global.output);
    Ok(exit::OK)
}

fn show(info: &ServiceInfo, format: Output) {
    let target = info.target.clone().unwrap_or_default();
    match format {
        Output::Json => println!(
            "{}",
            json!({
                "service": target.service,
                "environment": target.environment,
                "tags": output::tags_json(&info.tags),
            })
        ),
        Output::Text => println!(
            "{}/{} tags: {}",
            target.service,
            target.environment,
            output::tags_text(&info.tags)
        ),
    }
}
