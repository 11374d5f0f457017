//! What the control plane knows only while it runs: which agents have a
//! session open (and the channel to push missions down it), the per-mission
//! broadcast of log lines and updates that watchers subscribe to, the
//! per-service broadcast of "a newer mission started" that `logs -f` follows,
//! the fleet-wide stream of state changes the dashboard follows (`WatchEvents`),
//! and the counters behind `/metrics`. Everything durable is in the store;
//! losing the hub loses nothing but live connections. What is published here
//! also goes to the other replicas through the `relay`'s outbox (PostgreSQL
//! only); what they relay back comes in through `publish_local` and
//! `announce_local`, which do not send it out again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use launch_proto::{
    ControlMessage, FleetEvent, FleetEventKind, MissionEvent, MissionState, ServiceRef,
    mission_event,
};

/// Events buffered per mission before a slow subscriber lags (and re-reads the store).
const MISSION_CHANNEL: usize = 1024;
/// Fleet events buffered before a slow dashboard lags (and re-renders).
const FLEET_CHANNEL: usize = 1024;

/// The fleet-wide broadcast of state changes.
#[derive(Debug)]
pub struct Fleet(broadcast::Sender<FleetEvent>);

impl Default for Fleet {
    fn default() -> Self {
        Fleet(broadcast::channel(FLEET_CHANNEL).0)
    }
}

pub type Outbound = mpsc::Sender<Result<ControlMessage, Status>>;

#[derive(Debug)]
struct Session {
    connection: u64,
    service: String,
    environment: String,
    outbound: Outbound,
    closed: CancellationToken,
}

/// The open sessions by agent, and by service for the deploys' lookups:
/// one map scan per deploy would be 10,000 string compares with 10,000
/// agents connected.
#[derive(Debug, Default)]
struct Sessions {
    by_agent: HashMap<String, Session>,
    /// Per service and environment: its sessions' agents by connection
    /// number (the last is the most recent).
    by_service: HashMap<(String, String), BTreeMap<u64, String>>,
}

impl Sessions {
    /// Adds a session; returns the agent's previous one, now removed.
    fn insert(&mut self, agent_id: &str, session: Session) -> Option<Session> {
        let previous = self.remove(agent_id);
        self.by_service
            .entry((session.service.clone(), session.environment.clone()))
            .or_default()
            .insert(session.connection, agent_id.to_owned());
        self.by_agent.insert(agent_id.to_owned(), session);
        previous
    }

    fn remove(&mut self, agent_id: &str) -> Option<Session> {
        let session = self.by_agent.remove(agent_id)?;
        let key = (session.service.clone(), session.environment.clone());
        if let Some(agents) = self.by_service.get_mut(&key) {
            agents.remove(&session.connection);
            if agents.is_empty() {
                self.by_service.remove(&key);
            }
        }
        Some(session)
    }

    fn of_service(&self, service: &str, environment: &str) -> Option<&BTreeMap<u64, String>> {
        self.by_service
            .get(&(service.to_owned(), environment.to_owned()))
    }
}

#[derive(Debug, Default)]
pub struct Hub {
    next_connection: AtomicU64,
    sessions: Mutex<Sessions>,
    missions: Mutex<HashMap<String, broadcast::Sender<MissionEvent>>>,
    services: Mutex<HashMap<(String, String), broadcast::Sender<String>>>,
    fleet: Fleet,
    /// What the other replicas must hear of (enabled on PostgreSQL).
    pub outbox: super::relay::Outbox,
    pub log_lines_total: AtomicU64,
    pub deploys_total: AtomicU64,
}

/// Removes its session from the hub when the session's stream is dropped.
#[derive(Debug)]
pub struct SessionGuard {
    hub: Arc<Hub>,
    agent_id: String,
    connection: u64,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut sessions = self.hub.sessions.lock().expect("hub lock");
        if sessions
            .by_agent
            .get(&self.agent_id)
            .is_some_and(|s| s.connection == self.connection)
        {
            sessions.remove(&self.agent_id);
        }
    }
}

impl Hub {
    /// Records an open session; a newer session of the same agent replaces
    /// (and closes) the older one. The returned token fires when the session
    /// must end (agent revoked or replaced).
    pub fn connect(
        self: &Arc<Self>,
        agent_id: &str,
        service: &str,
        environment: &str,
        outbound: Outbound,
    ) -> (SessionGuard, CancellationToken) {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed) + 1;
        let closed = CancellationToken::new();
        let previous = self.sessions.lock().expect("hub lock").insert(
            agent_id,
            Session {
                connection,
                service: service.to_owned(),
                environment: environment.to_owned(),
                outbound,
                closed: closed.clone(),
            },
        );
        if let Some(previous) = previous {
            previous.closed.cancel();
        }
        self.agent_event(
            FleetEventKind::AgentConnected,
            agent_id,
            service,
            environment,
        );
        let guard = SessionGuard {
            hub: Arc::clone(self),
            agent_id: agent_id.to_owned(),
            connection,
        };
        (guard, closed)
    }

    /// Closes the agent's session, if open.
    pub fn close(&self, agent_id: &str) {
        let removed = self.sessions.lock().expect("hub lock").remove(agent_id);
        if let Some(session) = removed {
            // Its session ends, and its lease says the agent left.
            session.closed.cancel();
        }
    }

    /// Subscribes to every state change of the fleet.
    pub fn subscribe_fleet(&self) -> broadcast::Receiver<FleetEvent> {
        self.fleet.0.subscribe()
    }

    /// Tells the fleet's watchers on every replica that the agent connected
    /// or left: called once the store says so, so that what they read
    /// then agrees.
    pub fn agent_event(
        &self,
        kind: FleetEventKind,
        agent_id: &str,
        service: &str,
        environment: &str,
    ) {
        self.outbox.agent(kind, agent_id, service, environment);
        self.agent_event_local(kind, agent_id, service, environment);
    }

    /// [`Hub::agent_event`] on this replica only.
    pub fn agent_event_local(
        &self,
        kind: FleetEventKind,
        agent_id: &str,
        service: &str,
        environment: &str,
    ) {
        let _ = self.fleet.0.send(FleetEvent {
            kind: kind as i32,
            target: Some(ServiceRef {
                service: service.to_owned(),
                environment: environment.to_owned(),
            }),
            agent_id: agent_id.to_owned(),
            unix_ms: super::store::now_ms(),
            ..Default::default()
        });
    }

    /// A mission changed state (its target is filled in by `WatchEvents`,
    /// which reads the mission).
    fn mission_event(&self, mission_id: &str, state: MissionState, target: Option<ServiceRef>) {
        let _ = self.fleet.0.send(FleetEvent {
            kind: FleetEventKind::Mission as i32,
            target,
            mission_id: mission_id.to_owned(),
            state: state as i32,
            unix_ms: super::store::now_ms(),
            ..Default::default()
        });
    }

    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.sessions
            .lock()
            .expect("hub lock")
            .by_agent
            .contains_key(agent_id)
    }

    pub fn connected_count(&self) -> usize {
        self.sessions.lock().expect("hub lock").by_agent.len()
    }

    pub fn connected_for(&self, service: &str, environment: &str) -> usize {
        self.sessions
            .lock()
            .expect("hub lock")
            .of_service(service, environment)
            .map_or(0, BTreeMap::len)
    }

    /// The (service, environment) of every open session, each once.
    pub fn connected_services(&self) -> Vec<(String, String)> {
        let mut services: Vec<(String, String)> = self
            .sessions
            .lock()
            .expect("hub lock")
            .by_service
            .keys()
            .cloned()
            .collect();
        services.sort();
        services
    }

    /// The most recently connected session of an agent with these labels.
    pub fn session_for(&self, service: &str, environment: &str) -> Option<(String, Outbound)> {
        let sessions = self.sessions.lock().expect("hub lock");
        let (_, agent_id) = sessions
            .of_service(service, environment)?
            .last_key_value()?;
        let session = sessions.by_agent.get(agent_id)?;
        Some((agent_id.clone(), session.outbound.clone()))
    }

    /// Subscribes to a mission's events; channels nobody listens to any more
    /// are dropped on the way (publishing to them would reach no one).
    pub fn subscribe_mission(&self, mission_id: &str) -> broadcast::Receiver<MissionEvent> {
        let mut missions = self.missions.lock().expect("hub lock");
        missions.retain(|id, sender| id == mission_id || sender.receiver_count() > 0);
        missions
            .entry(mission_id.to_owned())
            .or_insert_with(|| broadcast::channel(MISSION_CHANNEL).0)
            .subscribe()
    }

    /// Sends to the mission's current subscribers (none is fine) and, through
    /// the outbox, to the other replicas' (a line or an update, once stored);
    /// an update is also a fleet event.
    pub fn publish(&self, mission_id: &str, event: MissionEvent) {
        self.outbox.published(mission_id, &event);
        self.publish_local(mission_id, event);
    }

    /// [`Hub::publish`] on this replica only: for what another replica stored.
    pub fn publish_local(&self, mission_id: &str, event: MissionEvent) {
        if let Some(mission_event::Event::Update(update)) = &event.event {
            self.mission_event(mission_id, update.state(), None);
        }
        let sender = self
            .missions
            .lock()
            .expect("hub lock")
            .get(mission_id)
            .cloned();
        if let Some(sender) = sender {
            let _ = sender.send(event);
        }
    }

    pub fn subscribe_service(
        &self,
        service: &str,
        environment: &str,
    ) -> broadcast::Receiver<String> {
        self.services
            .lock()
            .expect("hub lock")
            .entry((service.to_owned(), environment.to_owned()))
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Whether anyone on this replica watches the mission.
    pub fn is_watched(&self, mission_id: &str) -> bool {
        self.missions
            .lock()
            .expect("hub lock")
            .get(mission_id)
            .is_some_and(|sender| sender.receiver_count() > 0)
    }

    /// The missions someone on this replica watches.
    pub fn watched_missions(&self) -> Vec<String> {
        self.missions
            .lock()
            .expect("hub lock")
            .iter()
            .filter(|(_, sender)| sender.receiver_count() > 0)
            .map(|(mission_id, _)| mission_id.clone())
            .collect()
    }

    /// The (service, environment) pairs someone on this replica follows
    /// (`logs -f`).
    pub fn followed_services(&self) -> Vec<(String, String)> {
        self.services
            .lock()
            .expect("hub lock")
            .iter()
            .filter(|(_, sender)| sender.receiver_count() > 0)
            .map(|(service, _)| service.clone())
            .collect()
    }

    /// Tells `logs -f` followers on every replica that `mission_id` is the
    /// service's newest mission.
    pub fn announce_mission(&self, service: &str, environment: &str, mission_id: &str) {
        self.outbox.newest(service, environment, mission_id);
        self.announce_local(service, environment, mission_id);
    }

    /// [`Hub::announce_mission`] on this replica only.
    pub fn announce_local(&self, service: &str, environment: &str, mission_id: &str) {
        self.mission_event(
            mission_id,
            MissionState::Queued,
            Some(ServiceRef {
                service: service.to_owned(),
                environment: environment.to_owned(),
            }),
        );
        let sender = self
            .services
            .lock()
            .expect("hub lock")
            .get(&(service.to_owned(), environment.to_owned()))
            .cloned();
        if let Some(sender) = sender {
            let _ = sender.send(mission_id.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound() -> Outbound {
        mpsc::channel(1).0
    }

    #[test]
    fn a_service_is_served_by_its_newest_session_until_that_one_goes() {
        let hub = Arc::new(Hub::default());
        let (first, _) = hub.connect("a-1", "web", "production", outbound());
        let (second, _) = hub.connect("a-2", "web", "production", outbound());
        let (_other, _) = hub.connect("a-3", "api", "production", outbound());
        assert_eq!(hub.connected_for("web", "production"), 2);
        assert_eq!(hub.session_for("web", "production").unwrap().0, "a-2");
        assert_eq!(
            hub.connected_services(),
            [("api", "production"), ("web", "production")]
                .map(|(s, e)| (s.to_owned(), e.to_owned()))
        );
        drop(second);
        assert_eq!(hub.session_for("web", "production").unwrap().0, "a-1");
        drop(first);
        assert!(hub.session_for("web", "production").is_none());
        assert_eq!(hub.connected_for("web", "production"), 0);
        assert_eq!(hub.connected_services().len(), 1, "only api is left");
    }

    #[test]
    fn an_agents_new_session_replaces_its_old_one_whose_guard_then_leaves_it_alone() {
        let hub = Arc::new(Hub::default());
        let (old, old_closed) = hub.connect("a-1", "web", "production", outbound());
        let (_new, new_closed) = hub.connect("a-1", "web", "production", outbound());
        assert!(old_closed.is_cancelled(), "the old session is told to end");
        assert_eq!(hub.connected_for("web", "production"), 1);
        drop(old);
        assert!(hub.is_connected("a-1"));
        assert_eq!(hub.session_for("web", "production").unwrap().0, "a-1");
        hub.close("a-1");
        assert!(new_closed.is_cancelled());
        assert!(hub.session_for("web", "production").is_none());
        assert_eq!(hub.connected_count(), 0);
    }
}
