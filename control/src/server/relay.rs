//! Log lines, mission updates and agents connecting or leaving reach the
//! watchers on every replica
//! (PostgreSQL only; SQLite has one replica and nothing here runs). The
//! replica that stores lines or an update publishes them to its own watchers
//! (`Hub::publish`), which also notes them in the hub's [`Outbox`]; a task
//! here sends what gathered as one `NOTIFY launch_relay`, coalesced (per
//! mission the first and last seq stored, the missions whose state changed,
//! the services' newest missions, the agents that connected or left), so
//! ingest never waits for a notification.
//! Every replica hears it on `wakeup`'s LISTEN connection and, for the
//! missions its watchers follow, reads the store and publishes what it finds
//! with `Hub::publish_local`; each watcher's `log_cursor` keeps every line
//! once, in order, and reports gaps. The store is the truth: a notification
//! can be lost, so every `check_every` ([`CHECK_EVERY`] by default) the
//! watched missions and followed services are also compared with the store,
//! and the newest stored line is published as a wake-up (a cursor behind it
//! reads the store). Updates are relayed as the mission row stands when read:
//! two quick updates may reach another replica's watchers as the latter only.
//! An agent's coming or going is only a prompt to re-read (the dashboard
//! reads who is connected from the store), so a lost one is not caught up.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use launch_proto::{FleetEventKind, MissionEvent, MissionState, MissionUpdate, mission_event};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::state::State;
use super::store::{Engine, MissionRow};

/// How often watched missions are compared with the store, by default.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Notifications buffered between the LISTEN connection and the relay;
/// beyond, they are dropped and the periodic check catches up.
pub const INBOX: usize = 1024;
/// PostgreSQL refuses a payload of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;
/// Lines read from the store per query when relaying.
const PAGE: u64 = 1000;

/// What this replica stored since its last notification, coalesced.
#[derive(Debug, Default)]
pub struct Outbox {
    enabled: AtomicBool,
    pending: Mutex<Pending>,
    ready: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Pending {
    /// Per mission, the first and last seq of the lines stored.
    lines: HashMap<String, (u64, u64)>,
    updates: BTreeSet<String>,
    /// (mission id, service, environment) of missions that became newest.
    newest: BTreeSet<(String, String, String)>,
    /// Agents that connected (`true`) or left, in order: (agent id,
    /// connected, service, environment).
    agents: Vec<(String, bool, String, String)>,
}

impl Outbox {
    /// Notes a line or an update the hub published (nothing until the relay
    /// runs, so nothing on SQLite).
    pub fn published(&self, mission_id: &str, event: &MissionEvent) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let mut pending = self.pending.lock().expect("outbox lock");
        match &event.event {
            Some(mission_event::Event::Line(line)) => match pending.lines.get_mut(mission_id) {
                Some((first, last)) => {
                    *first = (*first).min(line.seq);
                    *last = (*last).max(line.seq);
                }
                None => {
                    pending
                        .lines
                        .insert(mission_id.to_owned(), (line.seq, line.seq));
                }
            },
            Some(mission_event::Event::Update(_)) => {
                pending.updates.insert(mission_id.to_owned());
            }
            // A gap is a jump in the stored seqs: the readers see it there.
            Some(mission_event::Event::Gap(_)) | None => return,
        }
        drop(pending);
        self.ready.notify_one();
    }

    /// Notes that `mission_id` became the service's newest mission.
    pub fn newest(&self, service: &str, environment: &str, mission_id: &str) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        self.pending.lock().expect("outbox lock").newest.insert((
            mission_id.to_owned(),
            service.to_owned(),
            environment.to_owned(),
        ));
        self.ready.notify_one();
    }

    /// Notes that an agent connected or left (`Hub::agent_event`).
    pub fn agent(&self, kind: FleetEventKind, agent_id: &str, service: &str, environment: &str) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        self.pending.lock().expect("outbox lock").agents.push((
            agent_id.to_owned(),
            kind == FleetEventKind::AgentConnected,
            service.to_owned(),
            environment.to_owned(),
        ));
        self.ready.notify_one();
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("outbox lock"))
    }
}

impl Pending {
    /// The notifications saying all of this: a first line naming the sending
    /// replica, then one item a line (`L <mission> <first> <last>`,
    /// `U <mission>`, `N <mission> <service> <environment>`, `A <agent>
    /// <1 connected|0 left> <service> <environment>`), split to fit.
    fn payloads(&self, replica: &str) -> Vec<String> {
        let items = self
            .lines
            .iter()
            .map(|(mission_id, (first, last))| format!("L {mission_id} {first} {last}"))
            .chain(
                self.updates
                    .iter()
                    .map(|mission_id| format!("U {mission_id}")),
            )
            .chain(
                self.newest
                    .iter()
                    .map(|(mission_id, service, environment)| {
                        format!("N {mission_id} {service} {environment}")
                    }),
            )
            .chain(
                self.agents
                    .iter()
                    .map(|(agent_id, connected, service, environment)| {
                        format!(
                            "A {agent_id} {} {service} {environment}",
                            u8::from(*connected)
                        )
                    }),
            );
        let mut payloads = Vec::new();
        let mut payload = String::new();
        for item in items {
            if !payload.is_empty() && payload.len() + 1 + item.len() > MAX_PAYLOAD {
                payloads.push(std::mem::take(&mut payload));
            }
            if payload.is_empty() {
                payload.push_str(replica);
            }
            payload.push('\n');
            payload.push_str(&item);
        }
        if !payload.is_empty() {
            payloads.push(payload);
        }
        payloads
    }
}

/// Runs until `shutdown`: sends this replica's notifications and relays the
/// others' (`inbox`, fed by `wakeup`'s LISTEN connection) to the watchers
/// here. Returns at once on SQLite.
pub async fn run(
    state: Arc<State>,
    check_every: Duration,
    inbox: mpsc::Receiver<String>,
    shutdown: CancellationToken,
) {
    if state.store.engine() != Engine::Postgres {
        return;
    }
    let replica = format!("{:016x}", rand::random::<u64>());
    state.hub.outbox.enabled.store(true, Ordering::Relaxed);
    let relay = Relay {
        state: state.clone(),
        replica: replica.clone(),
        watched: HashMap::new(),
        newest: HashMap::new(),
    };
    tokio::join!(
        send(&state, &replica, &shutdown),
        relay.run(check_every, inbox, &shutdown)
    );
}

/// Sends what gathers in the outbox, one batch at a time.
async fn send(state: &State, replica: &str, shutdown: &CancellationToken) {
    let outbox = &state.hub.outbox;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = outbox.ready.notified() => {}
        }
        for payload in outbox.take().payloads(replica) {
            if let Err(err) = state.store.notify_relay(&payload).await {
                warn!(cause = %err, "cannot notify the other replicas of stored lines: their periodic check catches up");
            }
        }
    }
}

/// What the watchers here were last given of a mission another replica
/// writes.
#[derive(Default)]
struct Watched {
    /// The highest seq published here by the relay.
    relayed: u64,
    /// The state and message of the last update relayed (or seen).
    update: Option<(MissionState, String)>,
}

struct Relay {
    state: Arc<State>,
    replica: String,
    watched: HashMap<String, Watched>,
    /// The newest mission of each followed service, as last known.
    newest: HashMap<(String, String), String>,
}

type Result<T> = std::result::Result<T, sqlx::Error>;

impl Relay {
    async fn run(
        mut self,
        check_every: Duration,
        mut inbox: mpsc::Receiver<String>,
        shutdown: &CancellationToken,
    ) {
        let mut check = tokio::time::interval(check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listening = true;
        loop {
            let received = async {
                match listening {
                    true => inbox.recv().await,
                    false => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                payload = received => match payload {
                    Some(payload) => self.received(&payload).await,
                    None => listening = false,
                },
                _ = check.tick() => self.check().await,
            }
        }
    }

    /// Relays one notification of another replica (this replica's own are
    /// already published here).
    async fn received(&mut self, payload: &str) {
        let mut items = payload.lines();
        if items.next() == Some(self.replica.as_str()) {
            return;
        }
        for item in items {
            let fields: Vec<&str> = item.split(' ').collect();
            let relayed = match fields[..] {
                ["L", mission_id, first, last] => match (first.parse(), last.parse()) {
                    (Ok(first), Ok(last)) => self.lines(mission_id, first, last).await,
                    _ => {
                        debug!(item, "unreadable relay notification: ignored");
                        Ok(())
                    }
                },
                ["U", mission_id] => self.update(mission_id).await,
                ["N", mission_id, service, environment] => {
                    self.newest.insert(
                        (service.to_owned(), environment.to_owned()),
                        mission_id.to_owned(),
                    );
                    self.state
                        .hub
                        .announce_local(service, environment, mission_id);
                    Ok(())
                }
                ["A", agent_id, connected, service, environment] => {
                    let kind = match connected {
                        "1" => FleetEventKind::AgentConnected,
                        _ => FleetEventKind::AgentDisconnected,
                    };
                    self.state
                        .hub
                        .agent_event_local(kind, agent_id, service, environment);
                    Ok(())
                }
                _ => {
                    debug!(item, "unknown relay notification: ignored");
                    Ok(())
                }
            };
            if let Err(err) = relayed {
                warn!(cause = %err, "cannot read what another replica stored: the periodic check retries");
            }
        }
    }

    /// Lines `first..=last` were stored for `mission_id`.
    async fn lines(&mut self, mission_id: &str, first: u64, last: u64) -> Result<()> {
        if !self.state.hub.is_watched(mission_id) {
            self.watched.remove(mission_id);
            return Ok(());
        }
        let relayed = self.watched.get(mission_id).map_or(0, |w| w.relayed);
        // Lines before `first` a lost notification announced reach a cursor
        // through the store, when the first line published skips ahead.
        self.publish_lines(mission_id, relayed.max(first.saturating_sub(1)), last)
            .await
    }

    /// Publishes here the stored lines after `after` through `through`.
    async fn publish_lines(
        &mut self,
        mission_id: &str,
        mut after: u64,
        through: u64,
    ) -> Result<()> {
        while after < through {
            let lines = self
                .state
                .store
                .lines_after(mission_id, after, PAGE.min(through - after) as i64)
                .await?;
            let Some(newest) = lines.last() else {
                break;
            };
            after = newest.seq;
            for line in lines {
                self.state.hub.publish_local(
                    mission_id,
                    MissionEvent {
                        event: Some(mission_event::Event::Line(line)),
                    },
                );
            }
        }
        let watched = self.watched.entry(mission_id.to_owned()).or_default();
        watched.relayed = watched.relayed.max(after);
        Ok(())
    }

    /// `mission_id` changed state.
    async fn update(&mut self, mission_id: &str) -> Result<()> {
        if !self.state.hub.is_watched(mission_id) {
            self.watched.remove(mission_id);
            return Ok(());
        }
        if let Some(mission) = self.state.store.mission(mission_id).await? {
            self.relay_update(&mission, true);
        }
        Ok(())
    }

    /// Publishes the mission's state here unless it is what was relayed
    /// last. A first sight is only recorded (the watchers read the state
    /// when they started) unless `announced` or final.
    fn relay_update(&mut self, mission: &MissionRow, announced: bool) {
        let seen = (mission.state, mission.message.clone());
        let watched = self.watched.entry(mission.id.clone()).or_default();
        if watched.update.as_ref() == Some(&seen) {
            return;
        }
        let first_sight = watched.update.is_none();
        watched.update = Some(seen);
        if matches!(
            mission.state,
            MissionState::Unspecified | MissionState::Queued | MissionState::Dispatched
        ) || (first_sight && !announced && !mission.state.is_final())
        {
            return;
        }
        self.state
            .hub
            .publish_local(&mission.id, update_event(mission));
    }

    /// Compares what the watchers here follow with the store.
    async fn check(&mut self) {
        let watched = self.state.hub.watched_missions();
        self.watched
            .retain(|mission_id, _| watched.contains(mission_id));
        for mission_id in &watched {
            if let Err(err) = self.check_mission(mission_id).await {
                warn!(cause = %err, mission_id, "cannot compare a watched mission with the store");
            }
        }
        let followed = self.state.hub.followed_services();
        self.newest.retain(|service, _| followed.contains(service));
        for (service, environment) in followed {
            let newest = match self
                .state
                .store
                .newest_mission(&service, &environment)
                .await
            {
                Ok(Some(newest)) => newest.id,
                Ok(None) => continue,
                Err(err) => {
                    warn!(cause = %err, service, environment, "cannot read the newest mission of a followed service");
                    continue;
                }
            };
            let known = self
                .newest
                .insert((service.clone(), environment.clone()), newest.clone());
            if known.is_some_and(|known| known != newest) {
                self.state
                    .hub
                    .announce_local(&service, &environment, &newest);
            }
        }
    }

    async fn check_mission(&mut self, mission_id: &str) -> Result<()> {
        let Some(mission) = self.state.store.mission(mission_id).await? else {
            return Ok(());
        };
        let last = self.state.store.last_seq(mission_id).await?;
        if last > self.watched.get(mission_id).map_or(0, |w| w.relayed) {
            self.publish_lines(mission_id, last - 1, last).await?;
        }
        // A session held here publishes its own updates; its final state
        // is relayed regardless, as it ends the watch.
        let held_here =
            !mission.agent_id.is_empty() && self.state.hub.is_connected(&mission.agent_id);
        if !held_here || mission.state.is_final() {
            self.relay_update(&mission, false);
        }
        Ok(())
    }
}

/// The mission's stored state as an update event.
pub fn update_event(mission: &MissionRow) -> MissionEvent {
    MissionEvent {
        event: Some(mission_event::Event::Update(MissionUpdate {
            mission_id: mission.id.clone(),
            state: mission.state as i32,
            message: mission.message.clone(),
            release_id: if mission.result_release_id.is_empty() {
                mission.release_id.clone()
            } else {
                mission.result_release_id.clone()
            },
            url: mission.url.clone(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_the_replica_and_stay_under_the_limit() {
        let mut pending = Pending::default();
        for n in 0..500 {
            pending
                .lines
                .insert(format!("mission-{n:04}-with-a-long-id"), (n, n + 10));
        }
        pending.updates.insert("m-1".into());
        pending
            .newest
            .insert(("m-2".into(), "web".into(), "prod".into()));
        pending
            .agents
            .push(("a-1".into(), true, "web".into(), "prod".into()));
        let payloads = pending.payloads("r1");
        assert!(payloads.len() > 1, "500 items fit in one payload?");
        let mut items = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= MAX_PAYLOAD, "{}", payload.len());
            let mut lines = payload.lines();
            assert_eq!(lines.next(), Some("r1"));
            items.extend(lines.map(str::to_owned));
        }
        assert_eq!(items.len(), 503);
        assert!(items.contains(&"L mission-0007-with-a-long-id 7 17".to_owned()));
        assert!(items.contains(&"U m-1".to_owned()));
        assert!(items.contains(&"N m-2 web prod".to_owned()));
        assert!(items.contains(&"A a-1 1 web prod".to_owned()));
        assert!(Pending::default().payloads("r1").is_empty());
    }
}
