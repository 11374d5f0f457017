//! Who this agent is to the control plane. The single-use join token is traded
//! once for an agent id and a long-lived agent token, which are saved 0600 in
//! the data dir; every later start (and every reconnect) reuses them, so a
//! restarted host never registers twice.
//!
//! Every connection is made by [`channel`]. For an `https://` control URL it
//! speaks TLS (rustls, ring) and trusts the config's CA (`--ca-cert`), else
//! the system's roots. The CA is taken from the config by [`ensure`], which
//! the session loop calls before its first connection, and kept for the life
//! of the process. The session hands
//! tonic an IP endpoint (see `resolve`), so the server name checked against
//! the certificate is set explicitly to the URL's host name.

use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

use launch_proto::agent_service_client::AgentServiceClient;
use launch_proto::{Bearer, RegisterRequest};
use serde::{Deserialize, Serialize};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

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
    #[error("cannot reach the control plane at {url}: {reason}")]
    Unreachable { url: String, reason: String },
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

/// The CA PEM from the config; set once, before the first connection.
static CA_CERT: OnceLock<Option<Vec<u8>>> = OnceLock::new();

/// TLS settings for `control_url`: `None` for `http://`.
fn tls_config(control_url: &str) -> Option<ClientTlsConfig> {
    let uri: Uri = control_url.parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let tls = match CA_CERT.get().and_then(Option::as_ref) {
        Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    Some(tls.domain_name(host))
}

/// The full cause chain of a transport error, with what to do for the TLS
/// failures an operator can fix.
fn explain(control_url: &str, err: &tonic::transport::Error) -> String {
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    let https = control_url.starts_with("https://");
    if https && (chain.contains("certificate") || chain.contains("UnknownIssuer")) {
        chain.push_str("; the control plane's certificate is not trusted: set --ca-cert (ca_cert in agent.toml, LAUNCH_AGENT_CA_CERT) to the CA that signed it");
    } else if https && (chain.contains("InvalidContentType") || chain.contains("corrupt message")) {
        chain.push_str("; the control plane does not speak TLS there: use http://");
    } else if !https {
        chain.push_str(
            "; if the control plane serves TLS, use an https:// control url (and --ca-cert)",
        );
    }
    chain
}

/// A connection to `control_url`, trying each address of its host in turn
/// (replicas behind one name); the error names every address tried.
pub async fn channel(control_url: &str) -> Result<Channel, Error> {
    first_reachable(control_url, crate::resolve::endpoints(control_url).await?).await
}

async fn first_reachable(control_url: &str, endpoints: Vec<Endpoint>) -> Result<Channel, Error> {
    let several = endpoints.len() > 1;
    let mut failures = Vec::new();
    for endpoint in endpoints {
        let address = endpoint.uri().clone();
        match connect(control_url, endpoint).await {
            Ok(channel) => return Ok(channel),
            Err(reason) if several => {
                tracing::debug!(%address, %reason, "cannot reach one address of the control plane: trying the next");
                failures.push(format!("{address}: {reason}"));
            }
            Err(reason) => failures.push(reason),
        }
    }
    Err(Error::Unreachable {
        url: control_url.to_owned(),
        reason: failures.join("; "),
    })
}

async fn connect(control_url: &str, mut endpoint: Endpoint) -> Result<Channel, String> {
    if let Some(tls) = tls_config(control_url) {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|err| explain(control_url, &err))?;
    }
    endpoint
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .http2_keep_alive_interval(std::time::Duration::from_secs(20))
        .connect()
        .await
        .map_err(|err| explain(control_url, &err))
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
    CA_CERT.get_or_init(|| config.ca_pem.clone());
    if let Some(identity) = load(&config.data_dir) {
        return Ok(identity);
    }
    let join_token = config.join_token.as_deref().ok_or(Error::NoJoinToken)?;
    let control_url = config.control_urls.current();
    let channel = channel(&control_url).await?;
    let mut client = AgentServiceClient::new(channel);
    let response = client
        .register(RegisterRequest {
            join_token: join_token.to_owned(),
            labels: config.labels.to_map().into_iter().collect(),
            hostname: config.hostname.clone(),
            version: crate::VERSION.to_owned(),
        })
        .await
        .map_err(|status| {
            let message = status.message();
            // A status with a source is a broken connection, not an answer.
            if std::error::Error::source(&status).is_some() {
                Error::Unreachable {
                    url: control_url.clone(),
                    reason: format!(
                        "{message}; the control plane does not speak plain HTTP/2 there: if it serves TLS, use an https:// control url (and --ca-cert)"
                    ),
                }
            } else {
                Error::Refused(format!("registration refused: {message}"))
            }
        })?
        .into_inner();
    let identity = Identity {
        agent_id: response.agent_id,
        control_url,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_address_of_a_name_is_tried_in_turn() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        // Listening is enough: the connect ends once TCP is up and the
        // HTTP/2 preface is written.
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open_port = open.local_addr().unwrap().port();
        let endpoint =
            |port: u16| Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        let url = "http://replicas.example:7400";
        first_reachable(url, vec![endpoint(closed_port), endpoint(open_port)])
            .await
            .expect("the second address answers");
        let err = first_reachable(url, vec![endpoint(closed_port), endpoint(closed_port)])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot reach the control plane at http://replicas.example:7400: "),
            "{err}"
        );
        assert_eq!(
            err.matches(&format!("127.0.0.1:{closed_port}")).count(),
            2,
            "{err}"
        );
    }
}
