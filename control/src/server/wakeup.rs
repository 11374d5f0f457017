//! Missions written by one replica for an agent whose session another
//! replica holds (PostgreSQL only). The replica that records a mission and
//! finds no session for it sends `NOTIFY launch_missions, '<mission id>'`;
//! every replica listens and dispatches the mission when it holds a session
//! of the mission's service, up to [`WAKES_AT_ONCE`] notified missions at
//! a time. The missions table stays the truth: a
//! notification can be lost (a dropped LISTEN connection, a replica
//! restarting), so every `check_every` ([`CHECK_EVERY`] by default) each
//! replica also dispatches the
//! queued missions of the services whose agents it holds. An agent may get a
//! mission twice (it dedupes by id); `mark_dispatched` never moves a mission
//! backwards. The same LISTEN connection hears the `relay`'s channel and
//! hands those notifications to it; when it breaks (PostgreSQL restarted) it
//! is connected again every second until it works.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use launch_proto::MissionState;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::state::State;
use super::store::RELAY_CHANNEL;

/// How often queued missions of locally held sessions are looked for, by default.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long to wait before connecting the LISTEN connection again.
const LISTEN_RETRY: Duration = Duration::from_secs(1);
/// Notified missions dispatched at once at most: each makes a few reads,
/// and a burst of deploys through other replicas would otherwise be
/// dispatched one after another (or exhaust the pool all at once).
const WAKES_AT_ONCE: usize = 16;

/// Runs until `shutdown`; returns at once on SQLite (one replica). The
/// relay's notifications go to `relay` (dropped when it is full: the relay's
/// own periodic check catches up).
pub async fn run(
    state: Arc<State>,
    check_every: Duration,
    relay: mpsc::Sender<String>,
    shutdown: CancellationToken,
) {
    let mut listener = match state.store.listener().await {
        Ok(Some(listener)) => Some(listener),
        Ok(None) => return,
        Err(err) => {
            warn!(cause = %err, "cannot LISTEN for other replicas yet: retrying; checking every {check_every:?} meanwhile");
            None
        }
    };
    let wakes = Arc::new(Semaphore::new(WAKES_AT_ONCE));
    let mut check = tokio::time::interval(check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // `None`: the time to connect again has come.
        let notified = async {
            match listener.as_mut() {
                Some(listener) => Some(
                    listener
                        .recv()
                        .await
                        .map(|n| (n.channel() == RELAY_CHANNEL, n.payload().to_owned())),
                ),
                None => {
                    tokio::time::sleep(LISTEN_RETRY).await;
                    None
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            notified = notified => match notified {
                Some(Ok((false, mission_id))) => {
                    let permit = wakes.clone().acquire_owned().await.expect("never closed");
                    let state = state.clone();
                    tokio::spawn(async move {
                        wake(&state, &mission_id).await;
                        drop(permit);
                    });
                }
                Some(Ok((true, payload))) => {
                    if relay.try_send(payload).is_err() {
                        debug!("the relay is behind: a notification dropped, its periodic check catches up");
                    }
                }
                Some(Err(err)) => {
                    warn!(cause = %err, "the LISTEN connection failed: connecting again; the periodic checks cover the gap");
                    listener = None;
                }
                None => match state.store.listener().await {
                    Ok(found) => {
                        info!("listening for other replicas again");
                        listener = found;
                    }
                    Err(err) => debug!(cause = %err, "cannot LISTEN yet: retrying"),
                },
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

/// Dispatches every queued mission of the services whose agents are here:
/// one query for all of them (a replica may hold thousands of sessions, and
/// a query per service every few seconds would be most of its work).
async fn sweep(state: &State) {
    let held: HashSet<(String, String)> = state.hub.connected_services().into_iter().collect();
    if held.is_empty() {
        return;
    }
    let queued = match state.store.queued_missions().await {
        Ok(missions) => missions,
        Err(err) => {
            warn!(cause = %err, "cannot read queued missions");
            return;
        }
    };
    for mission in queued
        .iter()
        .filter(|m| held.contains(&(m.service.clone(), m.environment.clone())))
    {
        if let Err(err) = state.dispatch(mission).await {
            warn!(cause = %err, mission_id = %mission.id, "cannot dispatch a queued mission");
        }
    }
}
