//! `WatchMission` and `StreamLogs`: a mission's stored events replayed from
//! a seq, then its live ones from the hub, with a lagging reader caught up
//! from the store (`LogCursor` keeps every line once and in order). Logs
//! with `follow` move on to each newer mission of the service as it starts.

use tokio::sync::broadcast;
use tonic::{Request, Response, Status};
use tracing::warn;

use launch_proto::*;

use super::super::log_cursor::LogCursor;
use super::super::relay::update_event;
use super::super::state::internal;
use super::{BoxStream, Control, target};

/// The lines and gaps among `events` as StreamLogs events of the cursor's mission.
fn log_events(cursor: &LogCursor, events: Vec<MissionEvent>) -> Vec<LogEvent> {
    events
        .into_iter()
        .filter_map(|event| {
            let (line, gap) = match event.event? {
                mission_event::Event::Line(line) => (Some(line), None),
                mission_event::Event::Gap(gap) => (None, Some(gap)),
                mission_event::Event::Update(_) => return None,
            };
            Some(LogEvent {
                mission_id: cursor.mission_id().to_owned(),
                line,
                gap,
            })
        })
        .collect()
}

impl Control {
    /// `WatchMission`: the stored events from `since_seq`, then live ones until the mission ends.
    pub(super) async fn watch(
        &self,
        request: Request<WatchMissionRequest>,
    ) -> Result<Response<BoxStream<MissionEvent>>, Status> {
        let request = request.into_inner();
        let state = self.state.clone();
        let mission_id = request.mission_id;
        if state
            .store
            .mission(&mission_id)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(Status::not_found(format!("no mission {mission_id}")));
        }
        let mut live = state.hub.subscribe_mission(&mission_id);
        let stream = async_stream::try_stream! {
            let mut cursor = LogCursor::new(mission_id.clone(), request.since_seq);
            for event in cursor.replay(&state).await? {
                yield event;
            }
            let mission = state.store.mission(&mission_id).await.map_err(internal)?
                .ok_or_else(|| Status::not_found(format!("no mission {mission_id}")))?;
            if mission.state.is_final() {
                for event in cursor.replay(&state).await? {
                    yield event;
                }
                yield update_event(&mission);
            } else {
                loop {
                    let received = tokio::select! {
                        _ = state.shutdown.cancelled() => None,
                        received = live.recv() => Some(received),
                    };
                    let Some(received) = received else {
                        Err(Status::unavailable("the control plane is shutting down: watch again to resume"))?;
                        break;
                    };
                    match received {
                        Ok(event) => {
                            let mut done = false;
                            for event in cursor.live(&state, event).await? {
                                done |= matches!(&event.event, Some(mission_event::Event::Update(update))
                                    if MissionState::try_from(update.state).is_ok_and(MissionState::is_final));
                                yield event;
                            }
                            if done {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(skipped)) => {
                            warn!(mission_id = %mission_id, skipped, "watcher lagged: re-reading from the store");
                            for event in cursor.replay(&state).await? {
                                yield event;
                            }
                            let mission = state.store.mission(&mission_id).await.map_err(internal)?
                                .ok_or_else(|| Status::not_found(format!("no mission {mission_id}")))?;
                            if mission.state.is_final() {
                                yield update_event(&mission);
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    /// `StreamLogs`: a mission's lines and gaps; with `follow`, on into each newer mission.
    pub(super) async fn logs(
        &self,
        request: Request<StreamLogsRequest>,
    ) -> Result<Response<BoxStream<LogEvent>>, Status> {
        let request = request.into_inner();
        let (service, environment) = target(request.target.as_ref())?;
        let state = self.state.clone();
        let mut newer = state.hub.subscribe_service(&service, &environment);
        let mission_id = if request.mission_id.is_empty() {
            state
                .store
                .newest_mission(&service, &environment)
                .await
                .map_err(internal)?
                .map(|m| m.id)
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "no missions for {service} in {environment} yet: deploy it with `launch deploy`"
                    ))
                })?
        } else {
            let mission = state
                .store
                .mission(&request.mission_id)
                .await
                .map_err(internal)?
                .filter(|m| m.service == service && m.environment == environment)
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "no mission {} for {service} in {environment}",
                        request.mission_id
                    ))
                })?;
            mission.id
        };
        let follow = request.follow;
        let stream = async_stream::try_stream! {
            let mut cursor = LogCursor::new(mission_id, request.since_seq);
            'missions: loop {
                let mut live = state.hub.subscribe_mission(cursor.mission_id());
                let events = cursor.replay(&state).await?;
                for event in log_events(&cursor, events) {
                    yield event;
                }
                if !follow {
                    break;
                }
                loop {
                    enum Next {
                        Shutdown,
                        Live(Result<MissionEvent, broadcast::error::RecvError>),
                        Newer(Result<String, broadcast::error::RecvError>),
                    }
                    let next = tokio::select! {
                        _ = state.shutdown.cancelled() => Next::Shutdown,
                        received = live.recv() => Next::Live(received),
                        received = newer.recv() => Next::Newer(received),
                    };
                    match next {
                        Next::Shutdown => {
                            Err(Status::unavailable("the control plane is shutting down: follow again to resume"))?;
                        }
                        Next::Live(Ok(event)) => {
                            let events = cursor.live(&state, event).await?;
                for event in log_events(&cursor, events) {
                                yield event;
                            }
                        }
                        Next::Live(Err(broadcast::error::RecvError::Lagged(_))) => {
                            let events = cursor.replay(&state).await?;
                for event in log_events(&cursor, events) {
                                yield event;
                            }
                        }
                        Next::Live(Err(broadcast::error::RecvError::Closed)) => break 'missions,
                        Next::Newer(Ok(newest)) => {
                            if newest != cursor.mission_id() {
                                let events = cursor.replay(&state).await?;
                for event in log_events(&cursor, events) {
                                    yield event;
                                }
                                cursor = LogCursor::new(newest, 0);
                                continue 'missions;
                            }
                        }
                        Next::Newer(Err(broadcast::error::RecvError::Lagged(_))) => {
                            let newest = state.store.newest_mission(&service, &environment).await.map_err(internal)?;
                            if let Some(newest) = newest.filter(|m| m.id != cursor.mission_id()) {
                                cursor = LogCursor::new(newest.id, 0);
                                continue 'missions;
                            }
                        }
                        Next::Newer(Err(broadcast::error::RecvError::Closed)) => break 'missions,
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}
