//! The gRPC service agents talk to. Register trades a single-use join token
//! for an agent token; Session is the agent's one long-lived stream (missions
//! down, acks/updates/logs up, in order; heartbeats carry the front door's
//! report, kept by `front_door`; what comes up is handled in
//! `agent_service/inbound`); FetchBundle serves a release's bundle to an
//! agent of that release's own service only.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::{error, info, warn};

use launch_core::labels::Labels;
use launch_proto::agent_service_server::AgentService;
use launch_proto::{
    AgentMessage, BundleChunk, ControlMessage, FetchAgentBinaryRequest, FetchBundleRequest,
    FleetEventKind, LogAck, RegisterRequest, RegisterResponse, Welcome, agent_message,
    control_message,
};

use super::bundle_store::BundleStoreError;
use super::last_seen::LastSeen;
use super::state::{State, internal};
use super::store::{AgentRow, now_ms};
use super::tokens;

mod inbound;
use inbound::{IngestCache, handle_agent_message};

/// How long a new session may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// What the agent is told to use between heartbeats.
const HEARTBEAT_INTERVAL_MS: i64 = 5_000;
/// A session silent this long (six missed heartbeats) is presumed dead and
/// closed, so missions stop going to it; the agent reconnects.
const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const BUNDLE_CHUNK_BYTES: usize = 1024 * 1024;

pub struct Agents {
    state: Arc<State>,
}

impl Agents {
    pub fn new(state: Arc<State>) -> Self {
        Agents { state }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn format_time(unix_ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[tonic::async_trait]
impl AgentService for Agents {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let request = request.into_inner();
        let store = &self.state.store;
        let token = store
            .join_token_by_hash(&tokens::hash(request.join_token.trim()))
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Status::unauthenticated(
                    "unknown join token: create one with `launch token create --service S --env E`",
                )
            })?;
        let host = if request.hostname.is_empty() {
            "an unnamed host"
        } else {
            request.hostname.as_str()
        };
        let now = now_ms();
        let refuse = |why: &str| {
            format!(
                "{why}; registration from host {host} refused at {}",
                format_time(now)
            )
        };
        let hint = format!(
            "create a new one with `launch token create --service {} --env {}`",
            token.service, token.environment
        );
        let failure = if token.revoked {
            Some((
                refuse("join token revoked"),
                Status::failed_precondition(format!("join token was revoked: {hint}")),
            ))
        } else if token.used_at.is_some() {
            Some((
                refuse("join token already used"),
                Status::failed_precondition(format!("join token was already used: {hint}")),
            ))
        } else if token.expires <= now {
            Some((
                refuse("join token expired"),
                Status::failed_precondition(format!(
                    "join token expired at {}: {hint}",
                    format_time(token.expires)
                )),
            ))
        } else {
            None
        };
        if let Some((note, status)) = failure {
            warn!(service = %token.service, environment = %token.environment, %note, "registration refused");
            store
                .set_note(&token.service, &token.environment, &note)
                .await
                .map_err(internal)?;
            return Err(status);
        }
        let map: BTreeMap<String, String> = request.labels.into_iter().collect();
        let labels = Labels::from_map(&map).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if labels.service.as_str() != token.service
            || labels.environment.as_str() != token.environment
        {
            let note = refuse(&format!(
                "agent labels {labels} do not match the join token's service-name={},environment={}",
                token.service, token.environment
            ));
            store
                .set_note(&token.service, &token.environment, &note)
                .await
                .map_err(internal)?;
            return Err(Status::permission_denied(format!(
                "labels {labels} differ from the join token's service-name={},environment={}: start the agent with those labels or {hint}",
                token.service, token.environment
            )));
        }
        let agent_token = tokens::mint(tokens::AGENT_PREFIX);
        let agent = AgentRow {
            id: tokens::new_id("a"),
            service: token.service.clone(),
            environment: token.environment.clone(),
            labels: serde_json::to_string(&labels.to_map()).map_err(internal)?,
            hostname: request.hostname,
            version: request.version,
            revoked: false,
            registered: now,
            last_seen: now,
            agent_sha256: String::new(),
        };
        if !store
            .register_agent(&token.id, &agent, &tokens::hash(&agent_token))
            .await
            .map_err(internal)?
        {
            return Err(Status::failed_precondition(format!(
                "join token was already used: {hint}"
            )));
        }
        info!(service = %agent.service, environment = %agent.environment, agent_id = %agent.id, hostname = %agent.hostname, "agent registered");
        Ok(Response::new(RegisterResponse {
            agent_id: agent.id,
            agent_token,
        }))
    }

    type SessionStream = BoxStream<ControlMessage>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let agent = self.state.authorize_agent(request.metadata()).await?;
        super::agent_upgrade::check_session(request.metadata(), &agent.id)?;
        let inbound = request.into_inner();
        Ok(Response::new(Box::pin(session_stream(
            self.state.clone(),
            agent,
            inbound,
        ))))
    }

    type FetchBundleStream = BoxStream<BundleChunk>;

    type FetchAgentBinaryStream = BoxStream<BundleChunk>;

    async fn fetch_agent_binary(
        &self,
        request: Request<FetchAgentBinaryRequest>,
    ) -> Result<Response<Self::FetchAgentBinaryStream>, Status> {
        let agent = self.state.authorize_agent(request.metadata()).await?;
        let sha256 = request.into_inner().sha256;
        let chunks = super::agent_upgrade::fetch(&self.state, &sha256).await?;
        info!(agent_id = %agent.id, sha256 = %sha256, "agent binary sent");
        Ok(Response::new(Box::pin(futures::stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    }

    async fn fetch_bundle(
        &self,
        request: Request<FetchBundleRequest>,
    ) -> Result<Response<Self::FetchBundleStream>, Status> {
        let agent = self.state.authorize_agent(request.metadata()).await?;
        let release_id = request.into_inner().release_id;
        let release = self
            .state
            .store
            .release(&release_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no release {release_id}")))?;
        if release.service != agent.service || release.environment != agent.environment {
            warn!(agent_id = %agent.id, release_id = %release.id, "agent asked for another service's bundle");
            return Err(Status::permission_denied(format!(
                "release {release_id} belongs to another service: an agent may fetch only its own service's bundles"
            )));
        }
        let mut bundle = self
            .state
            .bundles
            .open_bundle(&release.bundle_sha256)
            .await
            .map_err(|err| match err {
                BundleStoreError::Missing { .. } => {
                    warn!(agent_id = %agent.id, release_id = %release.id, cause = %err, "bundle missing");
                    Status::not_found(format!("release {}: {err}", release.id))
                }
                err => {
                    error!(agent_id = %agent.id, release_id = %release.id, cause = %err, "cannot open a bundle");
                    Status::unavailable(format!(
                        "the control plane cannot read bundle {} from {}: see its log, then deploy again",
                        release.bundle_sha256,
                        self.state.bundles.describe()
                    ))
                }
            })?;
        let sha256 = release.bundle_sha256;
        let shutdown = self.state.shutdown.clone();
        let stream = async_stream::try_stream! {
            let mut buffer = vec![0u8; BUNDLE_CHUNK_BYTES];
            loop {
                if shutdown.is_cancelled() {
                    Err(Status::unavailable("the control plane is shutting down: retry"))?;
                }
                // Whole chunks: an S3 body arrives in frames of a few KiB.
                let mut filled = 0;
                while filled < buffer.len() {
                    let read = bundle.read(&mut buffer[filled..]).await.map_err(|err| {
                        error!(cause = %err, bundle_sha256 = %sha256, "bundle read broke");
                        Status::unavailable(format!("reading bundle {sha256} broke: deploy again"))
                    })?;
                    if read == 0 {
                        break;
                    }
                    filled += read;
                }
                if filled == 0 {
                    break;
                }
                yield BundleChunk { data: buffer[..filled].to_vec() };
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}

fn control(msg: control_message::Msg) -> ControlMessage {
    ControlMessage { msg: Some(msg) }
}

// One value per turn of the session loop, never stored: its size does not
// matter (a Mission grew past clippy's threshold).
#[allow(clippy::large_enum_variant)]
enum Next {
    Shutdown,
    Closed,
    Idle,
    Outbound(Result<ControlMessage, Status>),
    Inbound(Result<Option<AgentMessage>, Status>),
}

/// The Session stream: Welcome, then (after Hello) LogAcks and unacked missions,
/// then both directions until either side ends or the server shuts down.
fn session_stream(
    state: Arc<State>,
    agent: AgentRow,
    mut inbound: Streaming<AgentMessage>,
) -> impl Stream<Item = Result<ControlMessage, Status>> + Send + 'static {
    async_stream::try_stream! {
        // Welcome goes out at once, so an agent that waits for it before
        // saying Hello cannot deadlock; everything else waits for Hello.
        let mut log_cursors = Vec::new();
        for mission in state
            .store
            .missions_to_resume(&agent.service, &agent.environment)
            .await
            .map_err(internal)?
        {
            let through_seq = state.store.last_seq(&mission.id).await.map_err(internal)?;
            log_cursors.push(LogAck { mission_id: mission.id.clone(), through_seq });
        }
        yield control(control_message::Msg::Welcome(Welcome {
            agent_id: agent.id.clone(),
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            log_cursors,
            previews: state
                .store
                .preview_names(&agent.service, &agent.environment)
                .await
                .map_err(internal)?,
        }));
        enum First {
            Shutdown,
            TimedOut,
            Message(Result<Option<AgentMessage>, Status>),
        }
        let first = tokio::select! {
            _ = state.shutdown.cancelled() => First::Shutdown,
            _ = tokio::time::sleep(HELLO_TIMEOUT) => First::TimedOut,
            message = inbound.message() => First::Message(message),
        };
        let hello = match first {
            First::Shutdown => None,
            First::TimedOut => {
                Err(Status::deadline_exceeded("no Hello within 30s: send Hello first on a session"))?;
                None
            }
            First::Message(message) => match message? {
                Some(AgentMessage { msg: Some(agent_message::Msg::Hello(hello)) }) => Some(hello),
                Some(_) => {
                    Err(Status::invalid_argument("the first message on a session must be Hello"))?;
                    None
                }
                None => None,
            },
        };
        if let Some(hello) = hello {
            // This session's name on the agent's row: its close and its
            // lease's renewals leave a newer session (elsewhere) alone.
            let session_id = super::tokens::new_id("s");
            state
                .store
                .open_session(&agent.id, &session_id, &hello)
                .await
                .map_err(internal)?;
            // Said once the store says so, on every replica: the agent left.
            let _lease = {
                let (hub, agent) = (state.hub.clone(), agent.clone());
                super::store::SessionLease::new(state.store.clone(), agent.id.clone(), session_id.clone(), move || {
                    hub.agent_event(FleetEventKind::AgentDisconnected, &agent.id, &agent.service, &agent.environment);
                })
            };
            let (outbound, mut outbound_rx) = mpsc::channel(256);
            let (_guard, closed) = state.hub.connect(&agent.id, &agent.service, &agent.environment, outbound);
            info!(service = %agent.service, environment = %agent.environment, agent_id = %agent.id, "agent connected");

            let resume = state
                .store
                .missions_to_resume(&agent.service, &agent.environment)
                .await
                .map_err(internal)?;
            for mission in &resume {
                let through_seq = state.store.last_seq(&mission.id).await.map_err(internal)?;
                yield control(control_message::Msg::LogAck(LogAck {
                    mission_id: mission.id.clone(),
                    through_seq,
                }));
            }
            let unacked = state
                .store
                .unacked_missions(&agent.service, &agent.environment)
                .await
                .map_err(internal)?;
            // A deploy racing this connect can also push its mission down the
            // outbound channel; each mission goes out once per session.
            let mut sent_missions = std::collections::HashSet::new();
            for mission in &unacked {
                sent_missions.insert(mission.id.clone());
                yield state.mission_message(mission).await?;
                state.store.mark_dispatched(&mission.id, &agent.id).await.map_err(internal)?;
                info!(service = %agent.service, environment = %agent.environment, mission_id = %mission.id, agent_id = %agent.id, "mission sent on connect");
            }

            let mut ingest = IngestCache::default();
            let mut front_door = super::front_door::Seen::default();
            let mut last_seen = LastSeen::written_at(std::time::Instant::now());
            let mut idle_deadline = tokio::time::Instant::now() + SESSION_IDLE_TIMEOUT;
            loop {
                let next = tokio::select! {
                    _ = state.shutdown.cancelled() => Next::Shutdown,
                    _ = closed.cancelled() => Next::Closed,
                    _ = tokio::time::sleep_until(idle_deadline) => Next::Idle,
                    Some(message) = outbound_rx.recv() => Next::Outbound(message),
                    message = inbound.message() => Next::Inbound(message),
                };
                if matches!(next, Next::Inbound(_)) {
                    idle_deadline = tokio::time::Instant::now() + SESSION_IDLE_TIMEOUT;
                }
                match next {
                    Next::Shutdown => break,
                    Next::Idle => {
                        warn!(agent_id = %agent.id, seconds = SESSION_IDLE_TIMEOUT.as_secs(), "no heartbeat from the agent: closing its session");
                        Err(Status::deadline_exceeded("no heartbeat for 30s: reconnect"))?;
                    }
                    Next::Closed => {
                        let revoked = state.agent_revoked(&agent.id).await?;
                        if revoked {
                            Err(Status::unauthenticated(
                                "agent token revoked: re-install the agent with a new join token",
                            ))?;
                        }
                        Err(Status::aborted("a newer session of this agent replaced this one"))?;
                    }
                    Next::Outbound(message) => {
                        let message = message?;
                        let duplicate = matches!(
                            &message.msg,
                            Some(control_message::Msg::Mission(m)) if !sent_missions.insert(m.mission_id.clone())
                        );
                        if !duplicate {
                            yield message;
                        }
                    }
                    Next::Inbound(Ok(Some(message))) => {
                        if let Some(reply) = handle_agent_message(&state, &agent, &session_id, &mut ingest, &mut front_door, &mut last_seen, message).await? {
                            yield reply;
                        }
                    }
                    Next::Inbound(Ok(None)) => break,
                    Next::Inbound(Err(status)) => {
                        info!(agent_id = %agent.id, cause = %status, "agent session ended");
                        break;
                    }
                }
            }
            info!(service = %agent.service, environment = %agent.environment, agent_id = %agent.id, "agent disconnected");
        }
    }
}
