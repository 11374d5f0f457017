//! The ACME (RFC 8555) client side of automatic TLS, on `instant-acme` with
//! its ring backend: the account (created once per directory, its credentials
//! kept 0600 in the data dir) and one order per name, proved with HTTP-01.
//! The key authorizations of pending challenges go into [`Challenges`], which
//! the front door's HTTP listener reads through `Certificates::http01_response`.
//!
//! The HTTPS exchange with the ACME server is ours, not instant-acme's default
//! client: rustls with ring only (no second TLS stack, no aws-lc), the system's
//! roots or `--acme-ca-root`, and host names resolved in Rust by
//! `crate::resolve` because the static agent has no NSS for `getaddrinfo`.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use launch_core::private_file;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use sha2::{Digest, Sha256};

/// Longest one HTTP exchange with the ACME server may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an order may wait for validation, then for the certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

/// Let's Encrypt's production directory, the default `--acme-directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME server {directory}: {source}")]
    Server {
        directory: String,
        source: instant_acme::Error,
    },
    #[error("the ACME server refused {name}: {detail}")]
    Invalid { name: String, detail: String },
    #[error("the ACME server offers no HTTP-01 challenge for {0}; only HTTP-01 is supported")]
    NoHttp01(String),
    #[error("the ACME account file {path}: {reason}; delete it to register a new account")]
    AccountFile { path: PathBuf, reason: String },
    #[error("no CA roots to trust for the ACME server: {0}")]
    Roots(String),
}

/// The key authorizations of pending HTTP-01 challenges, by token.
#[derive(Clone, Default)]
pub struct Challenges {
    pending: Arc<Mutex<HashMap<String, String>>>,
}

impl Challenges {
    pub fn response(&self, token: &str) -> Option<String> {
        self.pending.lock().unwrap().get(token).cloned()
    }

    fn insert(&self, token: String, key_authorization: String) {
        self.pending
            .lock()
            .unwrap()
            .insert(token, key_authorization);
    }

    fn remove(&self, token: &str) {
        self.pending.lock().unwrap().remove(token);
    }
}

/// A certificate just issued: its private key and chain, both PEM.
pub struct Issued {
    pub key_pem: String,
    pub chain_pem: String,
}

/// Where the ACME account lives and how it is reached.
#[derive(Clone)]
pub struct AcmeServer {
    pub directory: String,
    /// PEM roots to trust for the directory instead of the system's.
    pub ca_root_pem: Option<Vec<u8>>,
    pub email: Option<String>,
}

/// A registered ACME account, ready to order certificates.
pub struct AcmeClient {
    account: Account,
    directory: String,
}

impl AcmeClient {
    /// Restores the account saved for this directory in `acme_dir`, or
    /// registers one and saves its credentials (0600).
    pub async fn connect(server: &AcmeServer, acme_dir: &Path) -> Result<AcmeClient, AcmeError> {
        let path = account_path(acme_dir, &server.directory);
        let http = Box::new(Transport::new(server.ca_root_pem.as_deref())?);
        let builder = Account::builder_with_http(http);
        let failed = |source| AcmeError::Server {
            directory: server.directory.clone(),
            source,
        };
        let bad_file = |reason: String| AcmeError::AccountFile {
            path: path.clone(),
            reason,
        };
        let account = match std::fs::read(&path) {
            Ok(bytes) => {
                let credentials: AccountCredentials =
                    serde_json::from_slice(&bytes).map_err(|e| bad_file(e.to_string()))?;
                builder
                    .from_credentials(credentials)
                    .await
                    .map_err(failed)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let contact = server.email.as_ref().map(|email| format!("mailto:{email}"));
                let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
                let new = NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, credentials) = builder
                    .create(&new, server.directory.clone(), None)
                    .await
                    .map_err(failed)?;
                let json = serde_json::to_vec(&credentials).map_err(|e| bad_file(e.to_string()))?;
                private_file::create_private_dir(acme_dir)
                    .and_then(|()| private_file::write_private(&path, &json))
                    .map_err(|e| bad_file(e.to_string()))?;
                tracing::info!(directory = %server.directory, "registered an ACME account");
                account
            }
            Err(e) => return Err(bad_file(e.to_string())),
        };
        Ok(AcmeClient {
            account,
            directory: server.directory.clone(),
        })
    }

    /// Orders a certificate for `name`, answers its HTTP-01 challenge through
    /// `challenges` and returns the new key and chain.
    pub async fn issue(&self, name: &str, challenges: &Challenges) -> Result<Issued, AcmeError> {
        let failed = |source| AcmeError::Server {
            directory: self.directory.clone(),
            source,
        };
        let identifiers = [Identifier::Dns(name.to_owned())];
        let mut order = self
            .account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(failed)?;
        tracing::info!(host = name, order = order.url(), "ACME order placed");
        let mut published = Published {
            challenges,
            tokens: Vec::new(),
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(failed)?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Invalid {
                        name: name.to_owned(),
                        detail: format!("its authorization is {other:?}"),
                    });
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| AcmeError::NoHttp01(name.to_owned()))?;
            let token = challenge.token.clone();
            challenges.insert(
                token.clone(),
                challenge.key_authorization().as_str().to_owned(),
            );
            published.tokens.push(token);
            challenge.set_ready().await.map_err(failed)?;
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(ORDER_TIMEOUT);
        let status = order.poll_ready(&retries).await.map_err(failed)?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Invalid {
                name: name.to_owned(),
                detail: self.why_invalid(&mut order).await,
            });
        }
        let key_pem = order.finalize().await.map_err(failed)?;
        let chain_pem = order.poll_certificate(&retries).await.map_err(failed)?;
        drop(published);
        Ok(Issued { key_pem, chain_pem })
    }

    /// The challenge errors of a failed order, for the status and the log.
    async fn why_invalid(&self, order: &mut instant_acme::Order) -> String {
        let mut reasons = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authorization)) = authorizations.next().await {
            if let Ok(state) = authorization.refresh().await {
                reasons.extend(
                    state
                        .challenges
                        .iter()
                        .filter_map(|c| c.error.as_ref().map(|e| e.to_string())),
                );
            }
        }
        if reasons.is_empty() {
            "the order became invalid".to_owned()
        } else {
            reasons.join("; ")
        }
    }
}

/// Withdraws published challenge answers when an order ends, however it ends.
struct Published<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove(token);
        }
    }
}

/// One account file per directory URL, so pointing the agent at another ACME
/// server registers there instead of presenting a foreign account.
fn account_path(acme_dir: &Path, directory: &str) -> PathBuf {
    let digest = hex::encode(Sha256::digest(directory.as_bytes()));
    acme_dir.join(format!("account-{}.json", &digest[..16]))
}

/// instant-acme's HTTP client: one TLS connection per exchange (an order
/// takes a handful), HTTP/1.1, bodies read whole.
struct Transport {
    tls: tokio_rustls::TlsConnector,
}

impl Transport {
    fn new(ca_root_pem: Option<&[u8]>) -> Result<Transport, AcmeError> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_root_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert =
                        cert.map_err(|e| AcmeError::Roots(format!("--acme-ca-root: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| AcmeError::Roots(format!("--acme-ca-root: {e}")))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
            }
        }
        if roots.is_empty() {
            return Err(AcmeError::Roots(
                "none found: install the ca-certificates package, or pass --acme-ca-root".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AcmeError::Roots(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Transport {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

type Exchange = Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>;

impl instant_acme::HttpClient for Transport {
    fn request(&self, request: Request<BodyWrapper<Bytes>>) -> Exchange {
        let tls = self.tls.clone();
        Box::pin(async move {
            match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(tls, request)).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(reason)) => Err(instant_acme::Error::Other(reason.into())),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no answer within {}s", EXCHANGE_TIMEOUT.as_secs()).into(),
                )),
            }
        })
    }
}

async fn exchange(
    tls: tokio_rustls::TlsConnector,
    mut request: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, String> {
    let uri = request.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(format!("{uri} is not https://: ACME needs TLS"));
    }
    let host = uri.host().ok_or_else(|| format!("{uri} has no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let ip = match bare.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => crate::resolve::lookup(bare)
            .await
            .map_err(|e| e.to_string())?,
    };
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| format!("connect to {host}:{port} ({ip}): {e}"))?;
    let server_name =
        ServerName::try_from(bare.to_owned()).map_err(|e| format!("server name {bare}: {e}"))?;
    let stream = tls
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP with {host}:{port}: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str()).to_owned();
    *request.uri_mut() = path.parse().map_err(|e| format!("{path}: {e}"))?;
    request.headers_mut().insert(
        hyper::header::HOST,
        authority.parse().map_err(|e| format!("{authority}: {e}"))?,
    );
    let target = uri.clone();
    let exchange = async move {
        let uri = target;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{uri}: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{uri}: reading the body: {e}"))?
            .to_bytes();
        Ok::<_, String>(Response::from_parts(parts, Full::new(body)))
    };
    // The connection is driven here, beside the exchange; it closes when the
    // exchange drops its sender.
    let (result, _) = tokio::join!(exchange, async {
        let _ = connection.await;
    });
    result.map(BytesResponse::from)
}
