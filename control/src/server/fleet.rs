//! The two RPCs the dashboard needs beyond the CLI's: `WhoAmI` (the bearer
//! token's scope and patterns, so a read token is shown no buttons) and
//! `WatchEvents`, the fleet-wide stream of state changes from the hub
//! (missions queued or changing state, agents connecting and leaving). A
//! mission event is completed from the store (its service, environment,
//! preview and current state), so a watcher never sees a state the store
//! does not hold. A lagging watcher is told so by an event without a kind
//! and re-renders what it shows.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast;
use tonic::Status;

use launch_proto::{FleetEvent, FleetEventKind, ServiceRef, WhoAmIResponse};

use super::authz::Caller;
use super::state::{State, internal};

pub type FleetStream = Pin<Box<dyn Stream<Item = Result<FleetEvent, Status>> + Send + 'static>>;

/// The caller as `WhoAmI` answers it.
pub fn who_am_i(caller: Option<&Caller>) -> Result<WhoAmIResponse, Status> {
    let caller = caller.ok_or_else(|| internal("WhoAmI without a caller"))?;
    Ok(WhoAmIResponse {
        name: caller.name.clone(),
        scope: caller.scope.to_proto() as i32,
        service_pattern: caller.service_pattern.clone(),
        environment_pattern: caller.environment_pattern.clone(),
        token_id: caller.token_id.clone().unwrap_or_default(),
    })
}

/// Every fleet event from now until the server shuts down.
pub fn watch(state: Arc<State>) -> FleetStream {
    let mut events = state.hub.subscribe_fleet();
    Box::pin(async_stream::try_stream! {
        loop {
            let received = tokio::select! {
                _ = state.shutdown.cancelled() => None,
                received = events.recv() => Some(received),
            };
            let Some(received) = received else {
                Err(Status::unavailable("the control plane is shutting down: watch again"))?;
                break;
            };
            match received {
                Ok(event) => {
                    if let Some(event) = complete(&state, event).await? {
                        yield event;
                    }
                }
                // Tell the watcher it missed events: it re-reads everything.
                Err(broadcast::error::RecvError::Lagged(_)) => yield FleetEvent::default(),
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// A mission event with its target and stored state; `None` for a mission
/// the store no longer has.
async fn complete(state: &State, mut event: FleetEvent) -> Result<Option<FleetEvent>, Status> {
    if event.kind != FleetEventKind::Mission as i32 {
        return Ok(Some(event));
    }
    let Some(mission) = state
        .store
        .mission(&event.mission_id)
        .await
        .map_err(internal)?
    else {
        return Ok(None);
    };
    event.target = Some(ServiceRef {
        service: mission.service,
        environment: mission.environment,
    });
    event.state = mission.state as i32;
    event.preview = mission.preview;
    Ok(Some(event))
}
