//! Missions written by one replica for an agent whose session another
//! replica holds (PostgreSQL only). The replica that records a mission and
//! finds no session for it sends `NOTIFY launch_missions, '<mission id>'`;
//! every replica listens and dispatches the mission when it holds a session
//! of the mission's service. The missions table stays the truth: a
//! notification can be lost (a dropped LISTEN connection, a replica
//! restarting), so every `check_every` ([`CHECK_EVERY`] by default) each
//! replica also dispatches the
//! queued missions of the services whose agents it holds. An agent may get a
//! mission twice (it dedupes by id); `mark_dispatched` never moves a mission
//! backwards.

use std::sync::Arc;
use std::time::Duration;

use launch_proto::MissionState;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::state::State;

/// How often queued missions of locally held sessions are looked for, by default.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Runs until `shutdown`; returns at once on SQLite (one replica).
pub async fn run(state: Arc<State>, check_every: Duration, shutdown: CancellationToken) {
    let mut listener = match state.store.mission_listener().await {
        Ok(Some(listener)) => Some(listener),
        Ok(None) => return,
        Err(err) => {
            warn!(cause = %err, "cannot LISTEN for missions of other replicas: checking every {check_every:?} only");
            None
        }
    };
    let mut check = tokio::time::interval(check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let notified = async {
            match listener.as_mut() {
                Some(listener) => listener.recv().await.map(|n| n.payload().to_owned()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            notified = notified => match notified {
                Ok(mission_id) => wake(&state, &mission_id).await,
                Err(err) => {
                    warn!(cause = %err, "the LISTEN connection failed: retrying; the periodic check covers the gap");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
            _ = check.tick() => sweep(&state).await,
        }
    }
}

/// Dispatches `mission_id` if it is still queued and its agent is here.
async fn wake(state: &State, mission_id: &str) {
    let mission = match state.store.mission(mission_id).await {
        Ok(Some(mission)) => mission,
        Ok(None) => return,
        Err(err) => {
            warn!(cause = %err, mission_id, "cannot read a notified mission");
            return;
        }
    };
    if mission.state != MissionState::Queued
        || state
            .hub
            .connected_for(&mission.service, &mission.environment)
            == 0
    {
        return;
    }
    debug!(mission_id, "dispatching a mission another replica recorded");
    if let Err(err) = state.dispatch(&mission).await {
        warn!(cause = %err, mission_id, "cannot dispatch a notified mission");
    }
}

/// Dispatches every queued mission of the services whose agents are here.
async fn sweep(state: &State) {
    for (service, environment) in state.hub.connected_services() {
        let missions = match state.store.unacked_missions(&service, &environment).await {
            Ok(missions) => missions,
            Err(err) => {
                warn!(cause = %err, service, environment, "cannot read queued missions");
                continue;
            }
        };
        for mission in missions.iter().filter(|m| m.state == MissionState::Queued) {
            if let Err(err) = state.dispatch(mission).await {
                warn!(cause = %err, mission_id = %mission.id, "cannot dispatch a queued mission");
            }
        }
    }
}
