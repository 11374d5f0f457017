//! The agent's side of the Session stream. It makes sure the agent has an
//! identity, opens the stream, says Hello, and then runs three things at once
//! until the stream breaks: heartbeats, the uplink pump, and handling what the
//! control plane sends (missions are journalled before they are acknowledged).
//! Each heartbeat carries the front door's report (`ingress::Reporter`).
//! Any failure ends only the session: the loop moves to the next control
//! URL (`control_urls`: replicas) at once, and once every URL was tried
//! since a session last worked it waits a jittered exponential backoff from
//! 1 s to 64 s, reset after a session that worked.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use launch_proto::{
    AgentMessage, ControlMessage, Heartbeat, Hello, MissionAck, agent_message, control_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::control_urls::Failover;
use crate::identity::{self, Identity};
use crate::journal::{Journal, Record};
use crate::uplink::Uplink;

pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(64);

/// Exponential backoff with full jitter in [d/2, d].
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff { next: MIN_BACKOFF }
    }

    pub fn reset(&mut self) {
        self.next = MIN_BACKOFF;
    }

    /// The next delay to wait; doubles up to [`MAX_BACKOFF`].
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        let half = base / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

pub struct Sessions {
    pub config: Arc<Config>,
    pub journal: Arc<Journal>,
    pub uplink: Uplink,
    pub identity: identity::Shared,
    pub missions: mpsc::UnboundedSender<Record>,
    /// The live previews each `Welcome` names, for the executor's sweep.
    pub previews: tokio::sync::watch::Sender<crate::preview::Known>,
    /// The front door's report for each heartbeat (`None`: `--ingress off`).
    pub front_door: Option<crate::ingress::Reporter>,
    pub cancels: crate::cancels::Cancels,
    pub connected: Connected,
}

/// Whether a session is open (the control plane sent Welcome), for the
/// executor: a self-upgraded agent confirms only once one is.
#[derive(Clone)]
pub struct Connected(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Connected {
    fn default() -> Self {
        Connected(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Connected {
    fn set(&self, open: bool) {
        self.0.send_replace(open);
    }

    /// Waits until a session is open.
    pub async fn wait(&self) {
        let mut open = self.0.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
}

enum Ended {
    Shutdown,
    /// The session ran and then broke.
    Broke(String),
    /// The session never got going.
    Failed(String),
}

impl Sessions {
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Backoff::new();
        let mut failover = Failover::default();
        let mut announced = false;
        loop {
            let identity = match self.identity.get() {
                Some(identity) => Ok(identity),
                None => identity::ensure(&self.config).await.inspect(|identity| {
                    info!(agent_id = %identity.agent_id, "registered with the control plane");
                    self.identity.set(identity.clone());
                }),
            };
            let ended = match identity {
                Err(err) => Ended::Failed(err.to_string()),
                Ok(identity) => tokio::select! {
                    _ = shutdown.cancelled() => Ended::Shutdown,
                    ended = self.session(&identity, &mut announced, &mut backoff, &mut failover) => ended,
                },
            };
            let control_url = self.config.control_urls.current();
            let wait =
                !matches!(ended, Ended::Shutdown) && failover.next(&self.config.control_urls);
            let next_url = self.config.control_urls.current();
            let delay = match ended {
                Ended::Shutdown => return Ok(()),
                Ended::Broke(reason) => {
                    warn!(%reason, %control_url, %next_url, "session with the control plane ended; reconnecting");
                    if wait {
                        backoff.next_delay()
                    } else {
                        Duration::ZERO
                    }
                }
                Ended::Failed(reason) if !wait => {
                    warn!(%reason, %control_url, %next_url, "cannot open a session with the control plane: trying the next url");
                    Duration::ZERO
                }
                Ended::Failed(reason) => {
                    let delay = backoff.next_delay();
                    error!(%reason, %control_url, retry_in = ?delay, "cannot open a session with the control plane");
                    delay
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(
        &self,
        identity: &Identity,
        announced: &mut bool,
        backoff: &mut Backoff,
        failover: &mut Failover,
    ) -> Ended {
        let channel = match identity::channel(&self.config.control_urls.current()).await {
            Ok(channel) => channel,
            Err(err) => return Ended::Failed(err.to_string()),
        };
        let mut client = match identity::client(channel, &identity.token) {
            Ok(client) => client,
            Err(err) => return Ended::Failed(err.to_string()),
        };
        let (outbound, outbound_rx) = mpsc::channel::<AgentMessage>(64);
        let hello = Hello {
            version: crate::VERSION.to_owned(),
            hostname: self.config.hostname.clone(),
            advertise_host: self.config.advertise_host.clone(),
            current_release_id: String::new(),
            compose: crate::compose::describe_host().await,
            agent_sha256: crate::upgrade::own_sha256(),
        };
        let _ = outbound
            .send(message(agent_message::Msg::Hello(hello)))
            .await;
        let mut request = tonic::Request::new(ReceiverStream::new(outbound_rx));
        if let Ok(version) = crate::VERSION.parse() {
            request
                .metadata_mut()
                .insert(launch_proto::AGENT_VERSION_HEADER, version);
        }
        let mut inbound = match client.session(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                return Ended::Failed(format!(
                    "the control plane refused this agent's token ({}): if the agent was revoked, remove {} and re-install it with a new join token",
                    status.message(),
                    self.config.data_dir.join(identity::TOKEN_FILE).display()
                ));
            }
            Err(status) => return Ended::Failed(format!("session refused: {}", status.message())),
        };
        let welcome = match inbound.message().await {
            Ok(Some(ControlMessage {
                msg: Some(control_message::Msg::Welcome(welcome)),
            })) => welcome,
            // Only the kind of message: a mission's payload can hold secrets.
            Ok(other) => {
                let kind = match other.and_then(|m| m.msg) {
                    None => "the end of the session",
                    Some(control_message::Msg::Mission(_)) => "a mission",
                    Some(_) => "another message",
                };
                return Ended::Failed(format!(
                    "expected Welcome first, got {kind}: upgrade the agent or the control plane"
                ));
            }
            Err(status) => return Ended::Failed(status.message().to_owned()),
        };
        self.uplink.begin_session(&welcome.log_cursors);
        self.previews
            .send_replace(Some(welcome.previews.iter().cloned().collect()));
        if !*announced {
            println!("launch-agent connected as {}", welcome.agent_id);
            let _ = std::io::stdout().flush();
            *announced = true;
        }
        info!(agent_id = %welcome.agent_id, control_url = %self.config.control_urls.current(), "session open");
        self.connected.set(true);
        backoff.reset();
        failover.worked();

        let heartbeat_every =
            Duration::from_millis(welcome.heartbeat_interval_ms.clamp(1000, 15_000) as u64);
        let stop = CancellationToken::new();
        let _stop_guard = stop.clone().drop_guard();
        let pump = tokio::spawn(pump(
            self.uplink.clone(),
            outbound.clone(),
            heartbeat_every,
            self.front_door.clone(),
            stop.clone(),
        ));
        // Final updates re-sent this session (once each), for missions the
        // control plane may not have recorded as finished.
        let mut resent_final = HashSet::new();
        let ended = loop {
            let message = match inbound.message().await {
                Ok(Some(message)) => message,
                Ok(None) => break Ended::Broke("the control plane closed the session".to_owned()),
                Err(status) => break Ended::Broke(status.message().to_owned()),
            };
            match message.msg {
                Some(control_message::Msg::Mission(mission)) => {
                    let record = Record::from_mission(&mission);
                    let ours = record.service == self.config.labels.service.as_str()
                        && record.environment == self.config.labels.environment.as_str();
                    if !ours {
                        warn!(mission_id = %record.mission_id, service = %record.service, "ignoring a mission for another service");
                        continue;
                    }
                    match self.journal.record(&record) {
                        Ok(true) => {
                            info!(mission_id = %record.mission_id, kind = %record.kind, release_id = %record.release_id, "mission received");
                            let _ = self.missions.send(record.clone());
                        }
                        Ok(false) => {
                            if let Some(update) = self
                                .journal
                                .get(&record.mission_id)
                                .and_then(|r| r.final_update())
                            {
                                self.uplink.update(update);
                            }
                        }
                        Err(err) => {
                            error!(mission_id = %record.mission_id, cause = %err, "cannot journal the mission; not acknowledging it");
                            continue;
                        }
                    }
                    let ack = MissionAck {
                        mission_id: record.mission_id,
                    };
                    if outbound.send(message_ack(ack)).await.is_err() {
                        break Ended::Broke("the outbound stream closed".to_owned());
                    }
                }
                Some(control_message::Msg::LogAck(ack)) => {
                    self.uplink.ack(&ack);
                    if resent_final.insert(ack.mission_id.clone())
                        && let Some(update) = self
                            .journal
                            .get(&ack.mission_id)
                            .and_then(|r| r.final_update())
                    {
                        self.uplink.update(update);
                    }
                }
                Some(control_message::Msg::Cancel(cancel)) => {
                    info!(mission_id = %cancel.mission_id, "cancel requested");
                    self.cancels.request(&cancel.mission_id);
                }
                Some(control_message::Msg::Welcome(_)) | None => {}
            }
        };
        self.connected.set(false);
        stop.cancel();
        let _ = pump.await;
        ended
    }
}

fn message(msg: agent_message::Msg) -> AgentMessage {
    AgentMessage { msg: Some(msg) }
}

fn message_ack(ack: MissionAck) -> AgentMessage {
    message(agent_message::Msg::Ack(ack))
}

/// Sends uplink messages as they become ready, and heartbeats (with the
/// front door's routes, certificates and counters).
async fn pump(
    uplink: Uplink,
    outbound: mpsc::Sender<AgentMessage>,
    heartbeat_every: Duration,
    front_door: Option<crate::ingress::Reporter>,
    stop: CancellationToken,
) {
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    loop {
        while let Some(msg) = uplink.next_message() {
            if outbound.send(message(msg)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = uplink.changed() => {}
            _ = heartbeat.tick() => {
                let beat = Heartbeat {
                    unix_ms: chrono_ms(),
                    front_door: front_door.as_ref().map(|f| f.report()),
                };
                if outbound.send(message(agent_message::Msg::Heartbeat(beat))).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_sixty_four_with_jitter() {
        let mut backoff = Backoff::new();
        let mut bases = Vec::new();
        for _ in 0..9 {
            let base = backoff.next;
            let delay = backoff.next_delay();
            assert!(
                delay >= base / 2 && delay <= base,
                "{delay:?} outside [{:?}, {base:?}]",
                base / 2
            );
            bases.push(base.as_secs());
        }
        assert_eq!(bases, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
        backoff.reset();
        assert!(backoff.next_delay() <= MIN_BACKOFF);
    }
}
