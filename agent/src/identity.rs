//! Who this agent is to the control plane. The single-use join token is traded
//! once for an agent id and a long-lived agent token, which are saved 0600 in
//! the data dir; every later start (and every reconnect) reuses them, so a
//! restarted host never registers twice.

use std::path::Path;
use std::sync::{Arc, RwLock};

use launch_proto::agent_service_client::AgentServiceClient;
use launch_proto::{Bearer, RegisterRequest};
use serde::{Deserialize, Serialize};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::config::Config;
use launch_core::private_file;

pub const TOKEN_FILE: &str = "agent.token";
pub const IDENTITY_FILE: &str = "agent.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: String,
    pub control_url: String,
    #[serde(skip)]
    pub token: String,
}

/// The identity once known, shared by the session and the executor.
#[derive(Clone, Default)]
pub struct Shared(Arc<RwLock<Option<Identity>>>);

impl Shared {
    pub fn get(&self) -> Option<Identity> {
        self.0.read().expect("identity lock").clone()
    }

    pub fn set(&self, identity: Identity) {
        *self.0.write().expect("identity lock") = Some(identity);
    }
}

pub type Client = AgentServiceClient<InterceptedService<Channel, Bearer>>;

/// Why the agent could not get or use an identity this time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the control plane at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Resolve(#[from] crate::resolve::ResolveError),
    #[error(
        "not registered yet and no join token: create one with `launch token create --service S --env E` and pass --join-token"
    )]
    NoJoinToken,
    #[error("cannot save the agent identity in {dir}: {source}")]
    Save {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

/// The saved identity, if this agent registered before.
pub fn load(data_dir: &Path) -> Option<Identity> {
    let token = std::fs::read_to_string(data_dir.join(TOKEN_FILE)).ok()?;
    let json = std::fs::read_to_string(data_dir.join(IDENTITY_FILE)).ok()?;
    let mut identity: Identity = serde_json::from_str(&json).ok()?;
    identity.token = token.trim().to_owned();
    (!identity.token.is_empty()).then_some(identity)
}

pub async fn channel(control_url: &str) -> Result<Channel, Error> {
    let endpoint = crate::resolve::endpoint(control_url).await?;
    endpoint
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .http2_keep_alive_interval(std::time::Duration::from_secs(20))
        .connect()
        .await
        .map_err(|source| Error::Unreachable {
            url: control_url.to_owned(),
            source,
        })
}

pub fn client(channel: Channel, token: &str) -> Result<Client, Error> {
    let bearer = Bearer::new(token).ok_or_else(|| {
        Error::Refused(format!(
            "the saved agent token holds characters a request cannot carry: remove {TOKEN_FILE} from the data dir and register again with a new join token"
        ))
    })?;
    Ok(AgentServiceClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(launch_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(launch_proto::MAX_MESSAGE_BYTES))
}

/// The saved identity, or a new one from the join token (saved before return).
pub async fn ensure(config: &Config) -> Result<Identity, Error> {
    if let Some(identity) = load(&config.data_dir) {
        return Ok(identity);
    }
    let join_token = config.join_token.as_deref().ok_or(Error::NoJoinToken)?;
    let channel = channel(&config.control_url).await?;
    let mut client = AgentServiceClient::new(channel);
    let response = client
        .register(RegisterRequest {
            join_token: join_token.to_owned(),
            labels: config.labels.to_map().into_iter().collect(),
            hostname: config.hostname.clone(),
            version: crate::VERSION.to_owned(),
        })
        .await
        .map_err(|status| Error::Refused(format!("registration refused: {}", status.message())))?
        .into_inner();
    let identity = Identity {
        agent_id: response.agent_id,
        control_url: config.control_url.clone(),
        token: response.agent_token,
    };
    let save = |name: &str, bytes: &[u8]| {
        private_file::write_private(&config.data_dir.join(name), bytes).map_err(|source| {
            Error::Save {
                dir: config.data_dir.display().to_string(),
                source,
            }
        })
    };
    save(TOKEN_FILE, identity.token.as_bytes())?;
    save(
        IDENTITY_FILE,
        serde_json::to_string(&identity)
            .expect("plain struct")
            .as_bytes(),
    )?;
    Ok(identity)
}
