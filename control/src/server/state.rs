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
use tracing::{error, info, warn};

use launch_core::redact::Redactor;
use launch_proto::{ControlMessage, Mission, control_message};

use super::hub::Hub;
use super::secrets::{self, SecretBox};
use super::store::{AgentRow, MissionRow, Store};
use super::tokens;

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
        let (agent_sha256, agent_version) = if mission.kind == launch_proto::MissionKind::Upgrade {
            let served = super::agent_upgrade::served(self).await?;
            (served.sha256, served.version)
        } else {
            Default::default()
        };
        // Four independent reads, made at once: on PostgreSQL one round
        // trip's wait instead of four, on SQLite four pooled connections.
        let store = &self.store;
        let (release, service, secrets, allowances) = tokio::try_join!(
            async { store.release(&mission.release_id).await.map_err(internal) },
            async {
                store
                    .service(&mission.service, &mission.environment)
                    .await
                    .map_err(internal)
            },
            self.mission_secrets(mission),
            async {
                store
                    .allowances(&mission.service, &mission.environment)
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
        self.hub
            .announce_mission(&mission.service, &mission.environment, &mission.id);
        let Some((agent_id, outbound)) =
            self.hub.session_for(&mission.service, &mission.environment)
        else {
            info!(service = %mission.service, environment = %mission.environment, mission_id = %mission.id, "no agent connected here: mission stays queued");
            // The agent may hold a session with another replica.
            if let Err(err) = self.store.notify_mission(&mission.id).await {
                warn!(cause = %err, mission_id = %mission.id, "cannot notify the other replicas: their periodic check will find the mission");
            }
            return Ok(());
        };
        let message = self.mission_message(mission).await?;
        if outbound.send(Ok(message)).await.is_err() {
            warn!(agent_id = %agent_id, mission_id = %mission.id, "agent session closed during dispatch: mission stays queued");
            return Ok(());
        }
        self.store
            .mark_dispatched(&mission.id, &agent_id)
            .await
            .map_err(internal)?;
        info!(service = %mission.service, environment = %mission.environment, mission_id = %mission.id, agent_id = %agent_id, "mission dispatched");
        Ok(())
    }
}
