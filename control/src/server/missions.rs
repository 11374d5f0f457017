//! The missions an operator queues or stops by hand: `launch restart`
//! (`docker compose restart` of the running release), `launch retire`
//! (`docker compose down` on the service's host; the service stays known and
//! a deploy brings it back) and `launch cancel` (a queued mission is
//! cancelled here; a dispatched or running one is cancelled by its agent,
//! which leaves the release that ran before it serving and reports
//! `cancelled`). Who may call them is `authz`'s business.

use tonic::Status;
use tracing::info;

use launch_proto::*;

use super::control_service::{mission_info, target};
use super::state::{State, internal};
use super::tokens;

/// Stores a restart or retire mission for the service's running release and
/// dispatches it.
pub async fn queue(
    state: &State,
    kind: MissionKind,
    requested: Option<&ServiceRef>,
) -> Result<MissionRef, Status> {
    let (service, environment) = target(requested)?;
    let store = &state.store;
    let row = store
        .service(&service, &environment)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            Status::not_found(format!(
                "no service {service} in {environment}: see `launch services`"
            ))
        })?;
    let release_id = row.current_release_id.clone().unwrap_or_default();
    if release_id.is_empty() && kind == MissionKind::Restart {
        return Err(Status::failed_precondition(format!(
            "nothing runs for {service} in {environment} to restart: deploy it with `launch deploy`"
        )));
    }
    let mission_id = tokens::new_id("m");
    store
        .insert_mission(&mission_id, kind, &service, &environment, &release_id)
        .await
        .map_err(internal)?;
    info!(service = %service, environment = %environment, mission_id = %mission_id, release_id = %release_id, kind = kind.label(), "mission queued");
    let mission = store
        .mission(&mission_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal("mission vanished after insert"))?;
    state.dispatch(&mission).await?;
    Ok(MissionRef {
        mission_id,
        release_id,
    })
}

/// Cancels a mission that has not ended: here when no agent took it yet,
/// else by telling its agent (which must be connected).
pub async fn cancel(state: &State, mission_id: &str) -> Result<MissionInfo, Status> {
    let store = &state.store;
    let find = || async {
        store
            .mission(mission_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no mission {mission_id}: mission ids are printed by deploy, rollback and restart"
                ))
            })
    };
    let mission = find().await?;
    if mission.state.is_final() {
        return Err(Status::failed_precondition(format!(
            "mission {mission_id} already ended {}: nothing to cancel",
            mission.state.label()
        )));
    }
    // The agent may hold the mission even while the store says queued
    // (dispatch records it after sending), so it is always told.
    let session = state
        .hub
        .session_for(&mission.service, &mission.environment);
    if let Some((_, outbound)) = &session {
        let message = ControlMessage {
            msg: Some(control_message::Msg::Cancel(CancelMission {
                mission_id: mission_id.to_owned(),
            })),
        };
        let _ = outbound.send(Ok(message)).await;
    }
    if mission.state == MissionState::Queued {
        let update = MissionUpdate {
            mission_id: mission_id.to_owned(),
            state: MissionState::Cancelled as i32,
            message: "cancelled before an agent started it".to_owned(),
            release_id: String::new(),
            url: String::new(),
        };
        store
            .apply_update(&mission, &update, MissionState::Cancelled)
            .await
            .map_err(internal)?;
        state.hub.publish(
            mission_id,
            MissionEvent {
                event: Some(mission_event::Event::Update(update)),
            },
        );
    } else if session.is_none() {
        return Err(Status::unavailable(format!(
            "the agent of {} in {} is not connected, so mission {mission_id} cannot be stopped now: see `launch agents` and cancel again once it is back",
            mission.service, mission.environment
        )));
    }
    info!(service = %mission.service, environment = %mission.environment, mission_id = %mission_id, "cancel requested");
    Ok(mission_info(&find().await?))
}
