//! What an agent sends up its session once it said Hello: acks, mission
//! updates (a mission of its own service only, and never past a final
//! state), log batches (deduplicated by seq, gaps reported, redacted with
//! the mission's secrets before they are stored and published, and acked
//! back), health reports and heartbeats (which renew the session's lease and
//! carry the front door's report). Split from `agent_service` so that the
//! session's life (open, resume, dispatch, close) reads apart from what it
//! carries.

use std::sync::Arc;

use launch_core::redact::Redactor;
use launch_proto::{
    AgentMessage, ControlMessage, LogAck, LogBatch, LogGap, MissionEvent, MissionState,
    MissionUpdate, agent_message, control_message, mission_event,
};
use tonic::Status;
use tracing::{info, warn};

use super::super::last_seen::LastSeen;
use super::super::state::{State, internal};
use super::super::store::{AgentRow, MissionRow};
use super::control;

/// The mission `mission_id`, if it belongs to the agent's own service.
async fn own_mission(
    state: &State,
    agent: &AgentRow,
    mission_id: &str,
) -> Result<Option<MissionRow>, Status> {
    let mission = state.store.mission(mission_id).await.map_err(internal)?;
    match mission {
        Some(m) if m.service == agent.service && m.environment == agent.environment => Ok(Some(m)),
        Some(_) => {
            warn!(agent_id = %agent.id, mission_id = %mission_id, "agent reported on another service's mission: ignored");
            Ok(None)
        }
        None => {
            warn!(agent_id = %agent.id, mission_id = %mission_id, "agent reported on an unknown mission: ignored");
            Ok(None)
        }
    }
}

pub(super) async fn handle_agent_message(
    state: &State,
    agent: &AgentRow,
    session_id: &str,
    ingest: &mut IngestCache,
    front_door: &mut super::super::front_door::Seen,
    last_seen: &mut LastSeen,
    message: AgentMessage,
) -> Result<Option<ControlMessage>, Status> {
    let Some(msg) = message.msg else {
        return Ok(None);
    };
    match msg {
        agent_message::Msg::Hello(_) => Ok(None),
        agent_message::Msg::ServiceHealth(report) => {
            // Redacted by the agent; again here, as log lines are.
            let secrets = state
                .open_secrets(&agent.service, &agent.environment)
                .await?;
            let redactor = Redactor::new(secrets.values().map(String::as_str));
            let health = super::super::store::HealthRow {
                release_id: report.release_id,
                degraded: report.degraded,
                message: redactor.redact(&report.message).into_owned(),
            };
            if health.degraded {
                warn!(service = %agent.service, environment = %agent.environment, agent_id = %agent.id, release_id = %health.release_id, "service degraded");
            }
            state
                .store
                .set_service_health(&agent.service, &agent.environment, &health)
                .await
                .map_err(internal)?;
            Ok(None)
        }
        agent_message::Msg::Heartbeat(beat) => {
            if last_seen.due(std::time::Instant::now()) {
                state
                    .store
                    .touch_session(&agent.id, session_id, true)
                    .await
                    .map_err(internal)?;
            }
            if let Some(report) = beat.front_door {
                super::super::front_door::record(state, agent, front_door, report).await?;
            }
            Ok(None)
        }
        agent_message::Msg::Ack(ack) => {
            if let Some(mission) = own_mission(state, agent, &ack.mission_id).await?
                && state
                    .store
                    .mark_running(&mission, &agent.id)
                    .await
                    .map_err(internal)?
            {
                info!(service = %mission.service, environment = %mission.environment, mission_id = %mission.id, agent_id = %agent.id, "mission acknowledged");
                state.hub.publish(
                    &mission.id,
                    MissionEvent {
                        event: Some(mission_event::Event::Update(MissionUpdate {
                            mission_id: mission.id.clone(),
                            state: MissionState::Running as i32,
                            message: String::new(),
                            release_id: mission.release_id.clone(),
                            url: String::new(),
                        })),
                    },
                );
            }
            Ok(None)
        }
        agent_message::Msg::Update(update) => {
            let Some(mission) = own_mission(state, agent, &update.mission_id).await? else {
                return Ok(None);
            };
            let new_state =
                MissionState::try_from(update.state).unwrap_or(MissionState::Unspecified);
            if mission.state.is_final() {
                info!(mission_id = %mission.id, "update for a finished mission: ignored");
                return Ok(None);
            }
            if matches!(
                new_state,
                MissionState::Unspecified | MissionState::Queued | MissionState::Dispatched
            ) {
                warn!(mission_id = %mission.id, state = update.state, "agent sent an update with an unusable state: ignored");
                return Ok(None);
            }
            state
                .store
                .apply_update(&mission, &update, new_state)
                .await
                .map_err(internal)?;
            info!(service = %mission.service, environment = %mission.environment, mission_id = %mission.id, release_id = %mission.release_id, state = new_state.label(), message = %update.message, "mission update");
            state.hub.publish(
                &mission.id,
                MissionEvent {
                    event: Some(mission_event::Event::Update(update)),
                },
            );
            state
                .github
                .send(super::super::github::ReportEvent::Mission(
                    mission.id.clone(),
                ));
            Ok(None)
        }
        agent_message::Msg::Logs(batch) => ingest_logs(state, agent, ingest, batch).await,
    }
}

/// Stores the lines not stored yet (redacted again), acks, then fans out.
/// What a session knows about the missions its agent logs to, so a batch
/// costs one database write instead of four round trips: the mission was
/// checked to be the agent's own, the highest stored seq (only this session
/// writes this mission's lines while it lasts), and a redactor built from the
/// service's secrets when the session first logged to the mission.
#[derive(Default)]
pub(super) struct IngestCache {
    missions: std::collections::HashMap<String, MissionLog>,
}

struct MissionLog {
    last_seq: u64,
    redactor: Arc<Redactor>,
}

/// Sessions that log to more missions than this start the cache afresh.
const INGEST_CACHE_MISSIONS: usize = 64;

async fn ingest_logs(
    state: &State,
    agent: &AgentRow,
    cache: &mut IngestCache,
    batch: LogBatch,
) -> Result<Option<ControlMessage>, Status> {
    if !cache.missions.contains_key(&batch.mission_id) {
        let Some(mission) = own_mission(state, agent, &batch.mission_id).await? else {
            return Ok(None);
        };
        let last_seq = state.store.last_seq(&mission.id).await.map_err(internal)?;
        let redactor = Arc::new(state.mission_redactor(&mission).await?);
        if cache.missions.len() >= INGEST_CACHE_MISSIONS {
            cache.missions.clear();
        }
        cache
            .missions
            .insert(mission.id, MissionLog { last_seq, redactor });
    }
    let mission_id = batch.mission_id;
    let entry = cache.missions.get_mut(&mission_id).expect("inserted above");
    let last = entry.last_seq;
    let redactor = entry.redactor.clone();
    let mut expected = last + 1;
    let mut fresh = Vec::new();
    let mut gaps = Vec::new();
    let mut lines = batch.lines;
    lines.sort_by_key(|l| l.seq);
    for mut line in lines {
        if line.seq < expected {
            continue;
        }
        if line.seq > expected {
            warn!(mission_id = %mission_id, from_seq = expected, to_seq = line.seq - 1, "log lines missing");
            gaps.push((
                fresh.len(),
                LogGap {
                    from_seq: expected,
                    to_seq: line.seq - 1,
                },
            ));
        }
        if let std::borrow::Cow::Owned(redacted) = redactor.redact(&line.text) {
            line.text = redacted;
        }
        expected = line.seq + 1;
        fresh.push(line);
    }
    if !fresh.is_empty() {
        state
            .store
            .insert_lines(&mission_id, &fresh)
            .await
            .map_err(internal)?;
        state
            .hub
            .log_lines_total
            .fetch_add(fresh.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    let through_seq = expected - 1;
    if let Some(entry) = cache.missions.get_mut(&mission_id) {
        entry.last_seq = through_seq;
    }
    let mut gaps = gaps.into_iter().peekable();
    for (index, line) in fresh.into_iter().enumerate() {
        while let Some((_, gap)) = gaps.next_if(|(at, _)| *at == index) {
            state.hub.publish(
                &mission_id,
                MissionEvent {
                    event: Some(mission_event::Event::Gap(gap)),
                },
            );
        }
        state.hub.publish(
            &mission_id,
            MissionEvent {
                event: Some(mission_event::Event::Line(line)),
            },
        );
    }
    Ok(Some(control(control_message::Msg::LogAck(LogAck {
        mission_id,
        through_seq,
    }))))
}
