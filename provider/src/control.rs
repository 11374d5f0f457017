//! The provider's side of the control plane: the handful of `ControlService`
//! calls a `launch_service` needs (register the service, mint a join token,
//! sync secrets, see its agent, retire it). Errors say which call failed and
//! what to check; they never carry the token, a join token or a secret value.
//!
//! The provider and the control plane agree by ids, never by comparing the
//! Terraform runner's clock with the control plane's: `EnsureService` says
//! whether it created the service (remembered here, so a failed create undoes
//! only what it made), a create waits for the agent that registered with its
//! own join token, and destroying a host retires that host's agent and join
//! token (the service goes only when nothing else holds it).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use launch_core::labels::Labels;
use launch_proto::control_service_client::ControlServiceClient;
use launch_proto::{
    Bearer, CreateJoinTokenRequest, DeleteSecretRequest, EnsureServiceRequest, ListAgentsRequest,
    ListSecretsRequest, RetireServiceRequest, RevokeJoinTokenRequest, ServiceRef, SetSecretRequest,
};
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "control_url {url:?} is not a URL ({reason}): give the address `launch server` listens on, e.g. http://10.0.0.5:7400"
    )]
    BadUrl { url: String, reason: String },
    #[error(
        "the control plane at {url} is unreachable during {call} ({detail}): is `launch server` running there and reachable from where terraform runs?"
    )]
    Unreachable {
        url: String,
        call: &'static str,
        detail: String,
    },
    #[error(
        "the control plane at {url} refused the provider's token during {call} ({message}): set `token` in the provider block or LAUNCH_TOKEN to an admin token (see <data-dir>/admin.token)"
    )]
    Unauthorized {
        url: String,
        call: &'static str,
        message: String,
    },
    #[error("the control plane at {url} rejected {call}: {message}")]
    Rejected {
        url: String,
        call: &'static str,
        message: String,
    },
    #[error(
        "no agent with labels {labels} registered within {waited:?}: the host may still be booting, or cannot reach the control plane at {url}. Check the instance's console output (cloud-init), raise timeouts.create, or set wait_for_agent = false"
    )]
    NoAgent {
        url: String,
        labels: String,
        waited: Duration,
    },
}

/// A new join token: the id is kept in state, the token only in user-data.
pub struct JoinToken {
    pub id: String,
    pub token: String,
}

#[derive(Clone)]
pub struct ControlPlane {
    url: String,
    client: ControlServiceClient<InterceptedService<Channel, Bearer>>,
    /// What this provider process made for each `(service, environment)`
    /// during creates that have not finished: what a failed create undoes.
    made: Arc<Mutex<HashMap<(String, String), Made>>>,
}

/// What creates of one service made in the control plane.
#[derive(Debug, Default)]
struct Made {
    /// `EnsureService` created the service (or brought back a retired one).
    service: bool,
    join_token_ids: Vec<String>,
}

fn key(labels: &Labels) -> (String, String) {
    (
        labels.service.as_str().to_owned(),
        labels.environment.as_str().to_owned(),
    )
}

fn target(labels: &Labels) -> Option<ServiceRef> {
    Some(ServiceRef {
        service: labels.service.as_str().to_owned(),
        environment: labels.environment.as_str().to_owned(),
    })
}

impl ControlPlane {
    /// A lazily connected client: nothing is dialled until the first call, so a
    /// `terraform validate` works without a reachable control plane.
    pub fn new(url: &str, token: &str) -> Result<ControlPlane, ControlError> {
        let url = url.trim_end_matches('/').to_owned();
        let bad = |reason: String| ControlError::BadUrl {
            url: url.clone(),
            reason,
        };
        let endpoint = Endpoint::from_shared(url.clone()).map_err(|e| bad(e.to_string()))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad("it must start with http:// or https://".into()));
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .connect_lazy();
        let bearer = Bearer::new(token).ok_or_else(|| ControlError::BadUrl {
            url: url.clone(),
            reason:
                "the token holds characters that cannot be sent in a header; check LAUNCH_TOKEN"
                    .into(),
        })?;
        let client = ControlServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(launch_proto::MAX_MESSAGE_BYTES);
        Ok(ControlPlane {
            url,
            client,
            made: Default::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, call: &'static str, status: tonic::Status) -> ControlError {
        let url = self.url.clone();
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                ControlError::Unreachable {
                    url,
                    call,
                    detail: status.message().to_owned(),
                }
            }
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                ControlError::Unauthorized {
                    url,
                    call,
                    message: status.message().to_owned(),
                }
            }
            _ => ControlError::Rejected {
                url,
                call,
                message: status.message().to_owned(),
            },
        }
    }

    /// Registers the service (idempotent), remembering whether this call
    /// created it; `fqdn` is its public name ("" when not public), which the
    /// agent's front door routes, and `host_address` the address the host
    /// is reached at ("" before the host exists: left as it is), which the
    /// URL of a service without a name uses. The keys Terraform owns among
    /// the service's tags become exactly `tags`.
    pub async fn ensure_service(
        &self,
        labels: &Labels,
        fqdn: &str,
        host_address: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), ControlError> {
        let request = EnsureServiceRequest {
            target: target(labels),
            fqdn: fqdn.to_owned(),
            host_address: host_address.to_owned(),
            tags: tags.clone().into_iter().collect(),
            replace_tags: true,
        };
        let reply = self
            .client
            .clone()
            .ensure_service(request)
            .await
            .map_err(|s| self.error("EnsureService", s))?
            .into_inner();
        if reply.created {
            self.made
                .lock()
                .expect("made lock")
                .entry(key(labels))
                .or_default()
                .service = true;
        }
        Ok(())
    }

    pub async fn create_join_token(
        &self,
        labels: &Labels,
        ttl: Duration,
    ) -> Result<JoinToken, ControlError> {
        let request = CreateJoinTokenRequest {
            target: target(labels),
            ttl_secs: ttl.as_secs().max(60),
        };
        let reply = self
            .client
            .clone()
            .create_join_token(request)
            .await
            .map_err(|s| self.error("CreateJoinToken", s))?
            .into_inner();
        self.made
            .lock()
            .expect("made lock")
            .entry(key(labels))
            .or_default()
            .join_token_ids
            .push(reply.join_token_id.clone());
        Ok(JoinToken {
            id: reply.join_token_id,
            token: reply.join_token,
        })
    }

    /// Makes the service's secrets exactly `wanted`: sets every key in it (the
    /// control plane cannot say whether a value changed, so all are re-sent)
    /// and deletes keys in `previous` that are no longer wanted.
    pub async fn sync_secrets(
        &self,
        labels: &Labels,
        previous: &BTreeMap<String, String>,
        wanted: &BTreeMap<String, String>,
    ) -> Result<(), ControlError> {
        let mut client = self.client.clone();
        for (key, value) in wanted {
            if previous.get(key) == Some(value) {
                continue;
            }
            let request = SetSecretRequest {
                target: target(labels),
                key: key.clone(),
                value: value.clone(),
            };
            client
                .set_secret(request)
                .await
                .map_err(|s| self.error("SetSecret", s))?;
        }
        for key in previous.keys().filter(|k| !wanted.contains_key(*k)) {
            let request = DeleteSecretRequest {
                target: target(labels),
                key: key.clone(),
            };
            client
                .delete_secret(request)
                .await
                .map_err(|s| self.error("DeleteSecret", s))?;
        }
        Ok(())
    }

    /// The names of the secrets the control plane holds for the service.
    pub async fn secret_keys(&self, labels: &Labels) -> Result<Vec<String>, ControlError> {
        let request = ListSecretsRequest {
            target: target(labels),
        };
        let reply = self
            .client
            .clone()
            .list_secrets(request)
            .await
            .map_err(|s| self.error("ListSecrets", s))?
            .into_inner();
        Ok(reply.secrets.into_iter().map(|s| s.key).collect())
    }

    async fn agents(&self) -> Result<Vec<launch_proto::AgentInfo>, ControlError> {
        Ok(self
            .client
            .clone()
            .list_agents(ListAgentsRequest {})
            .await
            .map_err(|s| self.error("ListAgents", s))?
            .into_inner()
            .agents)
    }

    /// The newest unrevoked agent with these labels, if there is one (import).
    pub async fn newest_agent(&self, labels: &Labels) -> Result<Option<String>, ControlError> {
        let wanted = labels.to_map();
        let newest = self
            .agents()
            .await?
            .into_iter()
            .filter(|a| !a.revoked)
            .filter(|a| wanted.iter().all(|(k, v)| a.labels.get(k) == Some(v)))
            .max_by_key(|a| a.registered_unix_ms);
        Ok(newest.map(|a| a.agent_id))
    }

    /// Polls until the agent that registered with `join_token_id` (the host
    /// this create booted) is there, or `deadline` passes.
    pub async fn wait_for_agent(
        &self,
        labels: &Labels,
        join_token_id: &str,
        deadline: Instant,
        waited_from: Instant,
    ) -> Result<String, ControlError> {
        loop {
            let agent = self.agents().await?.into_iter().find(|a| {
                !a.revoked && !join_token_id.is_empty() && a.join_token_id == join_token_id
            });
            if let Some(agent) = agent {
                return Ok(agent.agent_id);
            }
            if Instant::now() >= deadline {
                return Err(ControlError::NoAgent {
                    url: self.url.clone(),
                    labels: labels.to_string(),
                    waited: Duration::from_secs(waited_from.elapsed().as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(500).min(deadline - Instant::now())).await;
        }
    }

    /// Forgets what creates of the service made (the create succeeded).
    pub fn keep_made(&self, labels: &Labels) {
        self.made.lock().expect("made lock").remove(&key(labels));
    }

    /// Undoes what creates of this service made in this process: retires
    /// the service if `EnsureService` created it, otherwise revokes the join
    /// tokens they minted. A service that was there before is left alone.
    pub async fn undo_create(&self, labels: &Labels) -> Result<(), ControlError> {
        let made = self.made.lock().expect("made lock").remove(&key(labels));
        let Some(made) = made else { return Ok(()) };
        if made.service {
            return self.retire(labels).await;
        }
        for join_token_id in made.join_token_ids {
            let request = RevokeJoinTokenRequest { join_token_id };
            match self.client.clone().revoke_join_token(request).await {
                Ok(_) => {}
                Err(status) if status.code() == tonic::Code::NotFound => {}
                Err(status) => return Err(self.error("RevokeJoinToken", status)),
            }
        }
        Ok(())
    }

    /// Retires one host: its own agent and join token are revoked, and the
    /// service is retired only when nothing else holds it (a replacement's
    /// agent or join token keeps it, as with `create_before_destroy`).
    pub async fn retire_host(
        &self,
        labels: &Labels,
        agent_id: Option<&str>,
        join_token_id: Option<&str>,
    ) -> Result<(), ControlError> {
        let request = RetireServiceRequest {
            target: target(labels),
            agent_id: agent_id.unwrap_or_default().to_owned(),
            join_token_id: join_token_id.unwrap_or_default().to_owned(),
        };
        self.send_retire(labels, request).await
    }

    /// Revokes the service's agents and join tokens and forgets the service.
    /// A service the control plane does not know is already retired.
    pub async fn retire(&self, labels: &Labels) -> Result<(), ControlError> {
        let request = RetireServiceRequest {
            target: target(labels),
            ..Default::default()
        };
        self.send_retire(labels, request).await
    }

    async fn send_retire(
        &self,
        labels: &Labels,
        request: RetireServiceRequest,
    ) -> Result<(), ControlError> {
        let reply = match self.client.clone().retire_service(request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(()),
            Err(status) => return Err(self.error("RetireService", status)),
        };
        tracing::info!(
            service = %labels.service.as_str(),
            environment = %labels.environment.as_str(),
            agents_revoked = reply.agents_revoked,
            join_tokens_revoked = reply.join_tokens_revoked,
            service_retired = reply.service_retired,
            "retired in the control plane"
        );
        Ok(())
    }
}
