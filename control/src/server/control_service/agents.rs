//! The agents and the join tokens they register with, from the CLI's side:
//! the agents listed (connected to any replica, not only this one),
//! `RevokeAgent`, which also closes the agent's session here, and join
//! tokens created and revoked.

use tonic::{Request, Response, Status};
use tracing::info;

use launch_proto::*;

use super::super::state::internal;
use super::super::tokens;
use super::{Control, target};

/// Default join token lifetime.
const DEFAULT_JOIN_TTL_SECS: u64 = 3600;

impl Control {
    /// Every agent, as `Status` and `ListAgents` show them.
    pub(super) async fn all_agents(&self) -> Result<Vec<AgentInfo>, Status> {
        let rows = self.state.store.agents().await.map_err(internal)?;
        let join_tokens = self
            .state
            .store
            .join_token_ids_by_agent()
            .await
            .map_err(internal)?;
        // Connected to any replica, not only this one.
        let connected = self
            .state
            .store
            .connected_agents()
            .await
            .map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(|a| AgentInfo {
                join_token_id: join_tokens.get(&a.id).cloned().unwrap_or_default(),
                connected: connected.contains(&a.id),
                labels: serde_json::from_str(&a.labels).unwrap_or_default(),
                agent_id: a.id,
                hostname: a.hostname,
                version: a.version,
                revoked: a.revoked,
                last_seen_unix_ms: a.last_seen,
                registered_unix_ms: a.registered,
            })
            .collect())
    }

    /// `RevokeAgent`: the agent refused from now on, its session here closed.
    pub(super) async fn revoke_one_agent(
        &self,
        request: Request<RevokeAgentRequest>,
    ) -> Result<Response<RevokeAgentResponse>, Status> {
        let agent_id = request.into_inner().agent_id;
        if !self
            .state
            .store
            .revoke_agent(&agent_id)
            .await
            .map_err(internal)?
        {
            return Err(Status::not_found(format!(
                "no agent {agent_id}: see `launch agents`"
            )));
        }
        self.state.hub.close(&agent_id);
        info!(agent_id = %agent_id, "agent revoked");
        Ok(Response::new(RevokeAgentResponse {}))
    }

    /// `CreateJoinToken`: a join token for the service (created if missing),
    /// valid for the TTL asked (an hour if none, at most ten years).
    pub(super) async fn mint_join_token(
        &self,
        request: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<CreateJoinTokenResponse>, Status> {
        let request = request.into_inner();
        let (service, environment) = target(request.target.as_ref())?;
        let ttl_secs = if request.ttl_secs == 0 {
            DEFAULT_JOIN_TTL_SECS
        } else {
            request.ttl_secs.min(10 * 365 * 24 * 3600)
        };
        let store = &self.state.store;
        store
            .ensure_service(&service, &environment)
            .await
            .map_err(internal)?;
        let token = tokens::mint(tokens::JOIN_PREFIX);
        let id = tokens::new_id("j");
        let expires = super::super::store::now_ms() + (ttl_secs as i64) * 1000;
        store
            .insert_join_token(&id, &tokens::hash(&token), &service, &environment, expires)
            .await
            .map_err(internal)?;
        info!(service = %service, environment = %environment, join_token_id = %id, ttl_secs, "join token created");
        Ok(Response::new(CreateJoinTokenResponse {
            join_token_id: id,
            join_token: token,
            expires_unix_ms: expires,
        }))
    }

    /// `RevokeJoinToken`: the token registers no agent from now on.
    pub(super) async fn revoke_one_join_token(
        &self,
        request: Request<RevokeJoinTokenRequest>,
    ) -> Result<Response<RevokeJoinTokenResponse>, Status> {
        let id = request.into_inner().join_token_id;
        if !self
            .state
            .store
            .revoke_join_token(&id)
            .await
            .map_err(internal)?
        {
            return Err(Status::not_found(format!("no join token {id}")));
        }
        Ok(Response::new(RevokeJoinTokenResponse {}))
    }
}
