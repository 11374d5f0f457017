//! The two RPCs the dashboard needs beyond the CLI's: `WhoAmI` (the bearer
//! token's scope and patterns, so a read token is shown no buttons) and
//! `WatchEvents`, the fleet-wide stream of state changes from the hub
//! (missions queued or changing state, agents connecting and leaving). A
//! mission event is completed from the store (its service, environment,
//! preview and current state), so a watcher never sees a state the store
//! does not hold; it is completed once for all watchers ([`Completer`], a
//! task that runs while someone watches), not once per watcher. A lagging
//! watcher is told so by an event without a kind and re-renders what it
//! shows.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
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

/// Completed fleet events buffered before a slow watcher lags.
const COMPLETED: usize = 1024;

/// The fleet's events completed once for every watcher: a task started by
/// the first watcher, which stops when the last one has gone.
#[derive(Default)]
pub struct Completer {
    running: Mutex<Option<Running>>,
}

struct Running {
    completed: broadcast::Sender<FleetEvent>,
    task: JoinHandle<()>,
}

impl Completer {
    /// A receiver of every completed event from now on.
    fn subscribe(&self, state: &Arc<State>) -> broadcast::Receiver<FleetEvent> {
        let mut running = self.running.lock().expect("completer lock");
        if let Some(running) = running.as_ref()
            && !running.task.is_finished()
        {
            return running.completed.subscribe();
        }
        // Subscribed here, before the task runs: nothing sent from now on is missed.
        let events = state.hub.subscribe_fleet();
        let (completed, receiver) = broadcast::channel(COMPLETED);
        let task = tokio::spawn(complete_all(state.clone(), events, completed.clone()));
        *running = Some(Running { completed, task });
        receiver
    }
}

/// Completes each of the hub's fleet events once, until shutdown or until
/// nobody watches. A lagged subscription or a failed store read is passed on
/// as an event without a kind: the watchers re-render.
async fn complete_all(
    state: Arc<State>,
    mut events: broadcast::Receiver<FleetEvent>,
    completed: broadcast::Sender<FleetEvent>,
) {
    loop {
        let received = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            received = events.recv() => received,
        };
        let event = match received {
            Ok(event) => match complete(&state, event).await {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(err) => {
                    tracing::warn!(cause = %err, "fleet events: cannot complete an event; watchers re-render");
                    FleetEvent::default()
                }
            },
            Err(broadcast::error::RecvError::Lagged(_)) => FleetEvent::default(),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if completed.send(event).is_err() {
            // Nobody watches: stop, unless someone subscribed meanwhile.
            let mut running = state.fleet.running.lock().expect("completer lock");
            if completed.receiver_count() == 0 {
                *running = None;
                return;
            }
        }
    }
}

/// Every fleet event from now until the server shuts down.
pub fn watch(state: Arc<State>) -> FleetStream {
    let mut events = state.fleet.subscribe(&state);
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
                Ok(event) => yield event,
                // Tell the watcher it missed events: it re-reads everything.
                Err(broadcast::error::RecvError::Lagged(_)) => yield FleetEvent::default(),
                Err(broadcast::error::RecvError::Closed) => {
                    Err(Status::unavailable("the fleet's events stopped: watch again"))?;
                    break;
                }
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
