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

/// What a mission's message carries from the store, when the caller
/// already has it all (a deploy, which read or wrote every part of it).
#[derive(Clone, Debug, Default)]
pub struct Known {
    pub bundle_sha256: String,
    pub bundle_size: u64,
    pub fqdn: String,
    pub host_address: String,
    /// The secrets the agent gets, opened (see [`State::mission_secrets`]).
    pub secrets: HashMap<String, String>,
    pub allowances: Vec<String>,
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
        self.open_rows(service, environment, rows)
    }

    /// The stored secret rows of `service` in `environment`, in clear.
    pub fn open_rows(
        &self,
        service: &str,
        environment: &str,
        rows: Vec<super::store::SecretRow>,
    ) -> Result<HashMap<String, String>, Status> {
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

    /// [`State::mission_message`], with what the caller already knows
    /// instead of reading it (a deploy, which just read or wrote it all).
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
        let known = match known {
            Some(known) => known.clone(),
            None => self.read_known(mission).await?,
        };
        let Known {
            bundle_sha256,
            bundle_size,
            fqdn,
            host_address,
            secrets,
            allowances,
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
                allowances,
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

    /// What a stored mission's message needs from the store. Independent
    /// reads, made at once: on PostgreSQL one round trip's wait instead of
    /// several, on SQLite several pooled connections.
    async fn read_known(&self, mission: &MissionRow) -> Result<Known, Status> {
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
        Ok(Known {
            bundle_sha256,
            bundle_size,
            fqdn,
            host_address,
            secrets,
            allowances: allowances.into_iter().map(|row| row.allowance).collect(),
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
    ///
    /// `session` was looked up before the mission was written, so it can
    /// be stale: an agent that connected since may have looked for its
    /// queued missions before this one was committed, and a session that
    /// closed since cannot take it. Hence, with no session or a failed
    /// send, the hub is asked once more, now that the mission is stored:
    /// a session registered by then is found here, one registered later
    /// finds the mission in its own connect-time query (the session
    /// registers itself in the hub before that query). Either way it is
    /// sent; a session gets it at most once (it drops repeats by id).
    pub async fn send_mission(
        &self,
        mission: &MissionRow,
        session: Option<(String, super::hub::Outbound)>,
        known: Option<&Known>,
    ) -> Result<(), Status> {
        self.hub
            .announce_mission(&mission.service, &mission.environment, &mission.id);
        let mut recorded = mission.state == MissionState::Dispatched;
        let mut message = None;
        let mut session = session;
        for look_again in [false, true] {
            if look_again {
                session = self.hub.session_for(&mission.service, &mission.environment);
            }
            let Some((agent_id, outbound)) = session.take() else {
                continue;
            };
            let recorded_here = recorded && mission.agent_id == agent_id;
            let built = match message.take() {
                Some(built) => built,
                None => self.mission_message_with(mission, known).await?,
            };
            // A failed send hands the message back, for the second look.
            if let Err(returned) = outbound.send(Ok(built)).await {
                message = returned.0.ok();
                warn!(agent_id = %agent_id, mission_id = %mission.id, "agent session closed during dispatch");
                if recorded_here {
                    self.store
                        .requeue(&mission.id, &agent_id)
                        .await
                        .map_err(internal)?;
                    recorded = false;
                }
                continue;
            }
            if !recorded_here {
                self.store
                    .mark_dispatched(&mission.id, &agent_id)
                    .await
                    .map_err(internal)?;
            }
            debug!(service = %mission.service, environment = %mission.environment, mission_id = %mission.id, agent_id = %agent_id, "mission dispatched");
            return Ok(());
        }
        info!(service = %mission.service, environment = %mission.environment, mission_id = %mission.id, "no agent connected here: mission stays queued");
        self.notify_replicas(&mission.id).await;
        Ok(())
    }

    /// The agent may hold a session with another replica.
    async fn notify_replicas(&self, mission_id: &str) {
        if let Err(err) = self.store.notify_mission(mission_id).await {
            warn!(cause = %err, mission_id = %mission_id, "cannot notify the other replicas: their periodic check will find the mission");
        }
    }
}

#[cfg(test)]
mod tests {
    //! `send_mission` against a real store and hub, with the interleavings
    //! of a deploy and an agent's connect that the wire cannot pin down.

    use launch_proto::MissionState;
    use tokio::sync::mpsc;

    use super::super::store::{MissionRow, NewDeploy};
    use super::*;

    async fn state_in(dir: &std::path::Path) -> Arc<State> {
        let url = format!("sqlite://{}", dir.join("launch.db").display());
        let store = Store::open(&url).await.expect("open the store");
        let bundles = super::super::bundle_store::BundleStore::open(
            &Default::default(),
            dir.join("bundles"),
            None,
        )
        .await
        .expect("open the bundle store");
        Arc::new(State {
            store,
            hub: Arc::new(Hub::default()),
            secrets: SecretBox::new([7; 32]),
            data_dir: dir.to_owned(),
            bundles,
            admin_hash: String::new(),
            max_bundle_bytes: 1 << 20,
            agent_binary: None,
            cli_binary: None,
            shutdown: CancellationToken::new(),
            revocations: Default::default(),
            github: Default::default(),
            previews: Default::default(),
            fleet: Default::default(),
        })
    }

    /// A deploy's write of its mission, queued (no session was found).
    async fn queued_deploy(state: &State, service: &str) -> MissionRow {
        let deploy = NewDeploy {
            service: service.to_owned(),
            environment: "production".to_owned(),
            git_ref: "main".to_owned(),
            bundle_sha256: "ab".repeat(32),
            bundle_size: 100,
            secrets: Vec::new(),
            release_id: tokens::new_id("r"),
            mission_id: tokens::new_id("m"),
            source: None,
            preview: String::new(),
            tags: Vec::new(),
            dispatch_to: None,
        };
        state.store.record_deploy(&deploy).await.unwrap().mission
    }

    fn mission_id_of(message: Option<Result<ControlMessage, Status>>) -> String {
        match message {
            Some(Ok(ControlMessage {
                msg: Some(control_message::Msg::Mission(mission)),
            })) => mission.mission_id,
            other => panic!("expected a mission, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_mission_stored_after_its_agent_connected_unseen_still_reaches_that_session() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(dir.path()).await;
        // The deploy looks for a session: none yet.
        let looked = state.hub.session_for("web", "production");
        assert!(looked.is_none());
        // The agent connects, and its connect-time look for queued
        // missions finds none: the deploy has not written its mission.
        let (outbound, mut session) = mpsc::channel(4);
        let (_guard, _closed) = state.hub.connect("a-1", "web", "production", outbound);
        assert!(
            state
                .store
                .unacked_missions("web", "production")
                .await
                .unwrap()
                .is_empty()
        );
        // Then the deploy writes it and sends with what it looked up.
        let mission = queued_deploy(&state, "web").await;
        state.send_mission(&mission, looked, None).await.unwrap();

        assert_eq!(mission_id_of(session.try_recv().ok()), mission.id);
        let stored = state.store.mission(&mission.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.state, stored.agent_id.as_str()),
            (MissionState::Dispatched, "a-1")
        );
    }

    #[tokio::test]
    async fn a_mission_whose_session_closed_before_the_send_goes_to_the_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(dir.path()).await;
        let (old, old_end) = mpsc::channel(4);
        let (_old_guard, _) = state.hub.connect("a-1", "web", "production", old);
        let looked = state.hub.session_for("web", "production");
        assert!(looked.is_some(), "the old session is found first");
        // It closes, and the agent's next session opens, before the send.
        drop(old_end);
        let (newer, mut newer_end) = mpsc::channel(4);
        let (_newer_guard, _) = state.hub.connect("a-1", "web", "production", newer);

        let mission = queued_deploy(&state, "web").await;
        state.send_mission(&mission, looked, None).await.unwrap();

        assert_eq!(mission_id_of(newer_end.try_recv().ok()), mission.id);
        let stored = state.store.mission(&mission.id).await.unwrap().unwrap();
        assert_eq!(stored.state, MissionState::Dispatched);
    }

    #[tokio::test]
    async fn a_mission_with_no_session_anywhere_stays_queued() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(dir.path()).await;
        let mission = queued_deploy(&state, "web").await;
        state.send_mission(&mission, None, None).await.unwrap();
        let stored = state.store.mission(&mission.id).await.unwrap().unwrap();
        assert_eq!(stored.state, MissionState::Queued);
        // The positive control: the same call with a session sends.
        let (outbound, mut session) = mpsc::channel(4);
        let (_guard, _) = state.hub.connect("a-1", "web", "production", outbound);
        state.send_mission(&mission, None, None).await.unwrap();
        assert_eq!(mission_id_of(session.try_recv().ok()), mission.id);
    }
}
