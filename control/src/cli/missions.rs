//! `launch restart`, `launch retire` and `launch cancel`: the missions an
//! operator queues or stops by hand. Restart and retire follow their mission
//! with `--wait` as `rollback` does; cancel always waits for the mission to
//! end and exits 0 only when it ended `cancelled` (1 when it finished some
//! other way first, 2 when it is unknown or already over, 3 unreachable).
//! `launch agents upgrade` queues upgrade missions and follows each.

use std::time::{Duration, Instant};

use launch_proto::*;
use serde_json::json;

use super::client::{self, Client};
use super::deploy::{self, Outcome};
use super::{CliError, Global, Output, exit, parse_duration};

#[derive(Debug, clap::Args)]
pub struct ServiceMissionArgs {
    pub service: String,
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    /// Follow the mission to its end (exit 1 if it fails)
    #[arg(long)]
    pub wait: bool,
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The mission id (`m-…`) that deploy, rollback or restart printed
    pub mission: String,
    /// How long to wait for the agent to stop it
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `launch restart` (`retire` = false) or `launch retire`.
pub async fn service_mission(
    global: &Global,
    args: ServiceMissionArgs,
    retire: bool,
) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let target = Some(ServiceRef {
        service: args.service.clone(),
        environment: args.environment.clone(),
    });
    let (kind, mission) = if retire {
        ("retire", client.retire(RetireRequest { target }).await)
    } else {
        ("restart", client.restart(RestartRequest { target }).await)
    };
    let mission = mission
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner();
    if !args.wait {
        match global.output {
            Output::Json => println!(
                "{}",
                json!({"mission_id": mission.mission_id, "release_id": mission.release_id, "state": "queued"})
            ),
            Output::Text => println!(
                "queued {kind} mission {} of {} in {}",
                mission.mission_id, args.service, args.environment
            ),
        }
        return Ok(exit::OK);
    }
    if global.output == Output::Text {
        eprintln!("queued {kind} mission {}", mission.mission_id);
    }
    let outcome: Outcome = deploy::wait(
        &mut client,
        &global.addr,
        global.output,
        &mission.mission_id,
        &mission.release_id,
        args.timeout,
    )
    .await?;
    Ok(outcome.exit_code())
}

/// `launch cancel MISSION`.
pub async fn cancel(global: &Global, args: CancelArgs) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let status = |s: tonic::Status| CliError::from_status(&s, &global.addr);
    let mut mission = client
        .cancel_mission(CancelMissionRequest {
            mission_id: args.mission.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let deadline = Instant::now() + args.timeout;
    while !state(&mission).is_final() {
        if Instant::now() >= deadline {
            return Err(CliError::failed(format!(
                "mission {} was still {} after {}: its agent has been asked to stop it; see `launch logs --mission {}`",
                args.mission,
                state(&mission).label(),
                humantime::format_duration(args.timeout),
                args.mission
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        mission = get(&mut client, &args.mission).await.map_err(status)?;
    }
    let ended = state(&mission);
    match global.output {
        Output::Json => println!(
            "{}",
            json!({"mission_id": mission.mission_id, "state": ended.label(), "message": mission.message})
        ),
        Output::Text if ended == MissionState::Cancelled => {
            println!("cancelled: {}", mission.message)
        }
        Output::Text => eprintln!(
            "mission {} ended {} before the cancel took effect: {}",
            mission.mission_id,
            ended.label(),
            mission.message
        ),
    }
    Ok(if ended == MissionState::Cancelled {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn state(mission: &MissionInfo) -> MissionState {
    MissionState::try_from(mission.state).unwrap_or_default()
}

async fn get(client: &mut Client, mission_id: &str) -> Result<MissionInfo, tonic::Status> {
    client
        .get_mission(GetMissionRequest {
            mission_id: mission_id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// Only agents of services matching this pattern (`*` wildcards)
    #[arg(long, default_value = "*")]
    pub service: String,
    /// Only agents of environments matching this pattern
    #[arg(long = "env", default_value = "*")]
    pub environment: String,
    /// Upgrade at most N agents now (run again for the rest)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub canary: u32,
    /// How long to follow each upgrade
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `launch agents upgrade`: queue, then follow every upgrade to its end
/// (exit 1 if any failed or was rolled back).
pub async fn upgrade_agents(
    global: &Global,
    client: &mut Client,
    args: UpgradeArgs,
) -> Result<u8, CliError> {
    let response = client
        .upgrade_agents(UpgradeAgentsRequest {
            service: args.service,
            environment: args.environment,
            canary: args.canary,
        })
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner();
    let version = if response.version.is_empty() {
        "(version unknown)".to_owned()
    } else {
        response.version.clone()
    };
    if global.output == Output::Text {
        eprintln!(
            "serving launch-agent {version} (sha256 {}…): {} to upgrade, {} already on it, {} deferred",
            response.sha256.chars().take(12).collect::<String>(),
            response.upgrades.len(),
            response.current,
            response.deferred
        );
    }
    let mut code = exit::OK;
    let mut results = Vec::new();
    for upgrade in &response.upgrades {
        if global.output == Output::Text {
            eprintln!(
                "upgrading {} ({}) from {}: mission {}",
                upgrade.agent_id,
                upgrade
                    .target
                    .as_ref()
                    .map(|t| format!("{}/{}", t.service, t.environment))
                    .unwrap_or_default(),
                upgrade.from_version,
                upgrade.mission_id
            );
        }
        let outcome = deploy::wait(
            client,
            &global.addr,
            global.output,
            &upgrade.mission_id,
            "",
            args.timeout,
        )
        .await?;
        code = code.max(outcome.exit_code());
        results.push(json!({
            "agent_id": upgrade.agent_id,
            "mission_id": upgrade.mission_id,
            "state": outcome.state.map(MissionState::label),
            "message": outcome.message,
        }));
    }
    if global.output == Output::Json {
        println!(
            "{}",
            json!({
                "version": response.version,
                "sha256": response.sha256,
                "upgrades": results,
                "current": response.current,
                "deferred": response.deferred,
            })
        );
    }
    Ok(code)
}
