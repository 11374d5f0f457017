//! The provider's side of the control plane: the handful of `ControlService`
//! calls a `launch_service` needs (register the service, mint a join token,
//! sync secrets, see its agent, retire it). Errors say which call failed and
//! what to check; they never carry the token, a join token or a secret value.

use std::collections::BTreeMap;
use std::time::Duration;

use launch_core::labels::Labels;
use launch_proto::control_service_client::ControlServiceClient;
use launch_proto::{
    Bearer, CreateJoinTokenRequest, DeleteSecretRequest, EnsureServiceRequest, ListAgentsRequest,
    ListSecretsRequest, ListServicesRequest, RetireServiceRequest, ServiceRef, SetSecretRequest,
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
        "the control plane at {url} refused the provider's token during {call}: set `token` in the provider block or LAUNCH_TOKEN to an admin token (see <data-dir>/admin.token)"
    )]
    Unauthorized { url: String, call: &'static str },
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
        Ok(ControlPlane { url, client })
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
                ControlError::Unauthorized { url, call }
            }
            _ => ControlError::Rejected {
                url,
                call,
                message: status.message().to_owned(),
            },
        }
    }

    /// Registers the service; `fqdn` is its public name ("" when not public),
    /// which the agent's front door routes.
    pub async fn ensure_service(&self, labels: &Labels, fqdn: &str) -> Result<(), ControlError> {
        let request = EnsureServiceRequest {
            target: target(labels),
            fqdn: fqdn.to_owned(),
        };
        self.client
            .clone()
            .ensure_service(request)
            .await
            .map_err(|s| self.error("EnsureService", s))?;
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

    /// The newest unrevoked agent with these labels registered at or after
    /// `since_unix_ms`, if there is one.
    pub async fn agent(
        &self,
        labels: &Labels,
        since_unix_ms: i64,
    ) -> Result<Option<String>, ControlError> {
        let wanted = labels.to_map();
        let reply = self
            .client
            .clone()
            .list_agents(ListAgentsRequest {})
            .await
            .map_err(|s| self.error("ListAgents", s))?
            .into_inner();
        let newest = reply
            .agents
            .into_iter()
            .filter(|a| !a.revoked && a.registered_unix_ms >= since_unix_ms)
            .filter(|a| wanted.iter().all(|(k, v)| a.labels.get(k) == Some(v)))
            .max_by_key(|a| a.registered_unix_ms);
        Ok(newest.map(|a| a.agent_id))
    }

    /// Polls until an agent with these labels has registered (since
    /// `since_unix_ms`), or `deadline` passes.
    pub async fn wait_for_agent(
        &self,
        labels: &Labels,
        since_unix_ms: i64,
        deadline: Instant,
        waited_from: Instant,
    ) -> Result<String, ControlError> {
        loop {
            if let Some(agent_id) = self.agent(labels, since_unix_ms).await? {
                return Ok(agent_id);
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

    /// Retires the service if it was registered at or after `since_unix_ms`
    /// (i.e. by the caller); leaves an older one alone.
    pub async fn retire_if_created_since(
        &self,
        labels: &Labels,
        since_unix_ms: i64,
    ) -> Result<(), ControlError> {
        let reply = self
            .client
            .clone()
            .list_services(ListServicesRequest {})
            .await
            .map_err(|s| self.error("ListServices", s))?
            .into_inner();
        let ours = reply.services.iter().any(|s| {
            s.target.as_ref().is_some_and(|t| {
                t.service == labels.service.as_str() && t.environment == labels.environment.as_str()
            }) && s.created_unix_ms >= since_unix_ms
        });
        if ours {
            self.retire(labels).await
        } else {
            Ok(())
        }
    }

    /// Revokes the service's agents and join tokens and forgets the service.
    /// A service the control plane does not know is already retired.
    pub async fn retire(&self, labels: &Labels) -> Result<(), ControlError> {
        let request = RetireServiceRequest {
            target: target(labels),
        };
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
            "retired in the control plane"
        );
        Ok(())
    }
}
