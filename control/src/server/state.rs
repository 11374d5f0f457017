//! What every request handler shares: the store, the hub, the secret box and
//! the server's settings, plus the operations both gRPC services need —
//! authenticating agents, decrypting a service's secrets for its own agent,
//! and dispatching a stored mission to a connected agent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tracing::{debug, error, info, warn};

use launch_core::redact::Redactor;
use launch_proto::{ControlMessage, Mission, MissionState, control_message};

use super::hub::Hub;
use super::secrets::{self, SecretBox};
use super::store::{AgentRow, MissionRow, Store};
use super::tokens;

/// What a mission's message carries of its release and host, when the
/// caller already has it.
#[derive(Clone, Debug, Default)]
pub struct Known {
    pub bundle_sha256: String,
    pub bundle_size: u64,
    pub fqdn: String,
    pub host_address: String,
}

pub struct State {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub secrets: SecretBox,
    pub data_dir: PathBuf,
    /// Where accepted bundles are kept (uploads arrive in its staging dir).
    pub bundles: super::bundle_store::BundleStore,
    pub admin_hash: String,
    pub max_bundle_bytes: u64,
    pub agent_binary: Option<PathBuf>,
    pub cli_binary: Option<PathBuf>,
    pub shutdown: CancellationToken,
    /// Open streams of scoped API tokens, ended when a token is revoked.
    pub revocations: super::authz::Revocations,
    /// Reports deploys from `--repo`/`--pr` to GitHub; a no-op when off.
    pub github: super::github::Reporter,
    /// The previews' cap, idle TTL and container limits.
    pub previews: super::previews::Settings,
    /// The fleet's events, completed once for every `WatchEvents` watcher.
    pub fleet: super::fleet::Completer,
}

/// A store failure as the caller sees it: generic, with the details logged;
/// `Unavailable` (the CLI's exit 3, a retry for `deploy --wait`) while the
/// database cannot be reached.
pub fn internal(err: impl std::fmt::Display + 'static) -> Status {
    if let Some(db) = (&err as &dyn std::any::Any).downcast_ref::<sqlx::Error>()
        && super::store::is_unreachable(db)
    {
        warn!(cause = %err, "the database is unreachable");
        return Status::unavailable(
            "the control plane cannot reach its database: try again once it is back (the server's log says why)",
        );
    }
    error!(cause = %err, "internal error");
    Status::internal("internal error in the control plane: see its log")
}

impl State {
    /// The calling agent, if its token is known and not revoked.
    pub async fn authorize_agent(&self, metadata: &MetadataMap) -> Result<AgentRow, Status> {
        let token = tokens::bearer(metadata).ok_or_else(|| {
            Status::unauthenticated(
                "missing agent token: register the agent with a join token first",
            )
        })?;
        let agent = self
            .store
            .agent_by_token_hash(&tokens::hash(&token))
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Status::unauthenticated(
                    "unknown agent token: re-install the agent with a new join token",
                )
            })?;
        if agent.revoked {
            return Err(Status::unauthenticated(
                "agent token revoked: re-install the agent with a new join token",
            ));
        }
        Ok(agent)
    }

    /// True when the agent is revoked (or unknown).
    pub async fn agent_revoked(&self, agent_id: &str) -> Result<bool, Status> {
        Ok(self
            .store
            .agent(agent_id)
            .await
            .map_err(internal)?
            .is_none_or(|agent| agent.revoked))
    }

    /// The service's secrets in clear, for its own agent only.
    pub async fn open_secrets(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<HashMap<String, String>, Status> {
        let rows = self
            .store
            .secrets(service, environment)
            .await
            .map_err(internal)?;
        let mut values = HashMap::new();
        for row in rows {
            let address = secrets::address(service, environment, &row.key);
            let value = self
                .secrets
                .open(&address, &row.nonce, &row.ciphertext)
                .map_err(internal)?;
            values.insert(row.key, value);
        }
        Ok(values)
    }

    /// The secrets a mission's agent gets: the environment's, and for a
    /// preview, its own overrides on top.
    async fn mission_secrets(
        &self,
        mission: &MissionRow,
    ) -> Result<HashMap<String, String>, Status> {
        let mut values = self
            .open_secrets(&mission.service, &mission.environment)
            .await?;
        if !mission.preview.is_empty() {
            let overrides =
                super::store::previews::secrets_environment(&mission.environment, &mission.preview);
            values.extend(self.open_secrets(&mission.service, &overrides).await?);
        }
        Ok(values)
    }

    /// What a mission's log lines are redacted with: every value its agent
    /// may hold, the environment's and, for a preview, the preview's
    /// overrides too (an overridden key's environment value is still a
    /// secret, so this is the union, not the merged map).
    pub async fn mission_redactor(&self, mission: &MissionRow) -> Result<Redactor, Status> {
        let mut values: Vec<String> = self
            .open_secrets(&mission.service, &mission.environment)
            .await?
            .into_values()
            .collect();
        if !mission.preview.is_empty() {
            let overrides =
                super::store::previews::secrets_environment(&mission.environment, &mission.preview);
            values.extend(
                self.open_secrets(&mission.service, &overrides)
                    .await?
                    .into_values(),
            );
        }
        Ok(Redactor::new(values.iter().map(String::as_str)))
    }

    /// The Mission message for a stored mission, with its service's secrets
    /// (and, for an upgrade, the agent binary served now).
    pub async fn mission_message(&self, mission: &MissionRow) -> Result<ControlMessage, Status> {
        self.mission_message_with(mission, None).await
    }

    /// [`State::mission_message`], with what the caller already knows of
    /// its release and host instead of reading them back (a deploy that
    /// just wrote them).
    async fn mission_message_with(
        &self,
        mission: &MissionRow,
        known: Option<&Known>,
    ) -> Result<ControlMessage, Status> {
        let (agent_sha256, agent_version) = if mission.kind == launch_proto::MissionKind::Upgrade {
            let served = super::agent_upgrade::served(self).await?;
            (served.sha256, served.version)
        } else {
            Default::default()
        };
        // Independent reads, made at once: on PostgreSQL one round trip's
        // wait instead of four, on SQLite several pooled connections.
        let store = &self.store;
        let read_known = async {
            if let Some(known) = known {
                return Ok(known.clone());
            }
            let (release, service) = tokio::try_join!(
                async { store.release(&mission.release_id).await.map_err(internal) },
                async {
                    store
                        .service(&mission.service, &mission.environment)
                        .await
                        .map_err(internal)
                },
            )?;
            let (bundle_sha256, bundle_size) = release
                .map(|r| (r.bundle_sha256, r.bundle_size.max(0) as u64))
                .unwrap_or_default();
            // The host's names and address are on the service's row.
            let (fqdn, host_address) = service
                .map(|row| (row.fqdn, row.host_address))
                .unwrap_or_default();
            Ok::<_, Status>(Known {
                bundle_sha256,
                bundle_size,
                fqdn,
                host_address,
            })
        };
        let (known, secrets, allowances) =
            tokio::try_join!(read_known, self.mission_secrets(mission), async {
                store
                    .allowances(&mission.service, &mission.environment)
                    .await
                    .map_err(internal)
            },)?;
        let Known {
            bundle_sha256,
            bundle_size,
            fqdn,
            host_address,
        } = known;
        Ok(ControlMessage {
            msg: Some(control_message::Msg::Mission(Mission {
                mission_id: mission.id.clone(),
                kind: mission.kind as i32,
                service: mission.service.clone(),
                environment: mission.environment.clone(),
                release_id: mission.release_id.clone(),
                bundle_sha256,
                bundle_size,
                secrets,
                created_unix_ms: mission.created,
                max_bundle_bytes: self.max_bundle_bytes,
                allowances: allowances.into_iter().map(|row| row.allowance).collect(),
                host_names: fqdn.split_whitespace().map(str::to_owned).collect(),
                agent_sha256,
                agent_version,
                host_address,
                preview: mission.preview.clone(),
                preview_memory_bytes: self.previews.memory_bytes,
                preview_millicpus: self.previews.millicpus,
            })),
        })
    }

    /// Pushes a stored mission to the most recently connected agent of its
    /// service, if any; otherwise it stays queued until an agent connects.
    pub async fn dispatch(&self, mission: &MissionRow) -> Result<(), Status> {
        let session = self.hub.session_for(&mission.service, &mission.environment);
        self.send_mission(mission, session, None).await
    }

    /// Sends `mission` down `session` (the agent's here, taken before the
    /// mission was recorded), or announces it to the other replicas when
    /// there is none. A mission recorded `dispatched` to that agent
    /// ([`super::store::NewDeploy::dispatch_to`]) needs no second write,
    /// and goes back to `queued` if the send fails; any other is marked
    /// dispatched once sent.
    pub async fn send_mission(
        &self,
        mission: &MissionRow,
        session: Option<(String, super::hub::Outbound)>,
        known: Option<&Known>,
    ) -> Result<(), Status> {
        self.hub
            .announce_mission(&mission.service, &mission.environment, &mission.id);
        let Some((agent_id, outbound)) = session else {
            info!(service = %mission.service, environment = %mission.environment, mission_id = %mission.id, "no agent connected here: mission stays queued");
            self.notify_replicas(&mission.id).await;
            return Ok(());
        };
        let recorded = mission.state == MissionState::Dispatched && mission.agent_id == agent_id;
        let message = self.mission_message_with(mission, known).await?;
        if outbound.send(Ok(message)).await.is_err() {
            warn!(agent_id = %agent_id, mission_id = %mission.id, "agent session closed during dispatch: mission stays queued");
            if recorded {
                self.store
                    .requeue(&mission.id, &agent_id)
                    .await
                    .map_err(internal)?;
                self.notify_replicas(&mission.id).await;
            }
            return Ok(());
        }
        if !recorded {
            self.store
                .mark_dispatched(&mission.id, &agent_id)
                .await
                .map_err(internal)?;
        }
        debug!(service = %mission.service, environment = %mission.environment, mission_id = %mission.id, agent_id = %agent_id, "mission dispatched");
        Ok(())
    }

    /// The agent may hold a session with another replica.
    async fn notify_replicas(&self, mission_id: &str) {
        if let Err(err) = self.store.notify_mission(mission_id).await {
            warn!(cause = %err, mission_id = %mission_id, "cannot notify the other replicas: their periodic check will find the mission");
        }
    }
}
