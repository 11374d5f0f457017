//! Connecting to the control plane: the address, the bearer token (flag, env
//! or file), TLS for `https://` addresses (the `--ca-cert` CA, else the
//! system's roots) and message-size limits, in one place for every command.
//! `--addr` may name several replicas, comma-separated: the connection goes
//! to the first that answers, each address of each name in turn, and when
//! it breaks the next call connects again the same way, so a waiting loop
//! (`deploy --wait`, `logs -f`) that retries after `Unavailable` resumes
//! through another replica. TLS checks every replica's certificate against
//! the first address's host name.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use launch_proto::Bearer;
use launch_proto::control_service_client::ControlServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::{CliError, Global};

pub type Client = ControlServiceClient<InterceptedService<Channel, Bearer>>;

/// The token from `--token`/`LAUNCH_TOKEN`, else from `--token-file`/`LAUNCH_TOKEN_FILE`.
pub fn token(global: &Global) -> Result<String, CliError> {
    if let Some(token) = global.token.as_deref().filter(|t| !t.trim().is_empty()) {
        return Ok(token.trim().to_owned());
    }
    if let Some(path) = &global.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        })?;
        return Ok(text.trim().to_owned());
    }
    Err(CliError::unreachable(
        "no token: pass --token or set LAUNCH_TOKEN (the admin token is in <data-dir>/admin.token of the server)",
    ))
}

/// Connects to `global.addr` with the token from `global`.
pub async fn connect(global: &Global) -> Result<Client, CliError> {
    let token = token(global)?;
    connect_with(&global.addr, &token, global.ca_cert.as_deref()).await
}

pub async fn connect_with(
    addr: &str,
    token: &str,
    ca_cert: Option<&Path>,
) -> Result<Client, CliError> {
    let replicas = replicas(addr)?;
    let mut endpoint = replicas[0].clone();
    let https = endpoint.uri().scheme_str() == Some("https");
    if let Some(path) = ca_cert
        && !https
    {
        return Err(CliError::usage(format!(
            "--ca-cert {} is only for https:// addresses, but --addr is {addr}: use https://",
            path.display()
        )));
    }
    if https {
        let tls = match ca_cert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    CliError::usage(format!(
                        "cannot read the CA certificate {} ({e}): give the PEM file of the CA that signed the server's certificate",
                        path.display()
                    ))
                })?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| CliError::usage(format!("cannot use TLS for {addr}: {e}")))?;
    }
    let endpoint = endpoint.tcp_nodelay(true);
    let channel = if replicas.len() == 1 {
        endpoint.connect_timeout(CONNECT_TIMEOUT).connect().await
    } else {
        let addresses = replicas
            .iter()
            .map(|replica| {
                let uri = replica.uri();
                let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
                (uri.host().unwrap_or_default().to_owned(), port)
            })
            .collect();
        endpoint
            .connect_with_connector(FirstReplica(Arc::new(addresses)))
            .await
    }
    .map_err(|e| CliError::unreachable(unreachable_message(addr, https, &e)))?;
    let bearer = Bearer::new(token).ok_or_else(|| {
        CliError::usage("the token contains characters that cannot be sent; check LAUNCH_TOKEN")
    })?;
    Ok(ControlServiceClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(launch_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(launch_proto::MAX_MESSAGE_BYTES))
}

/// How long one address may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoints `--addr` names (comma-separated), all of one scheme.
fn replicas(addr: &str) -> Result<Vec<Endpoint>, CliError> {
    let endpoints = addr
        .split(',')
        .map(str::trim)
        .filter(|one| !one.is_empty())
        .map(|one| {
            Endpoint::from_str(one).map_err(|e| {
                CliError::usage(format!(
                    "--addr {one:?} is not a URL ({e}); give e.g. http://127.0.0.1:7400 (several replicas: separate them with commas)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = endpoints.first() else {
        return Err(CliError::usage(
            "--addr is empty: give e.g. http://127.0.0.1:7400",
        ));
    };
    let scheme = first.uri().scheme_str();
    if let Some(other) = endpoints.iter().find(|e| e.uri().scheme_str() != scheme) {
        return Err(CliError::usage(format!(
            "--addr mixes http:// and https:// ({} and {}): give every replica with the same scheme",
            first.uri(),
            other.uri()
        )));
    }
    Ok(endpoints)
}

/// Connects to the first of several replicas that accepts, trying every
/// address of each host name in turn; called again by the channel after a
/// connection breaks.
#[derive(Clone)]
struct FirstReplica(Arc<Vec<(String, u16)>>);

impl tonic::codegen::Service<tonic::codegen::http::Uri> for FirstReplica {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::codegen::http::Uri) -> Self::Future {
        let replicas = self.0.clone();
        Box::pin(async move {
            let mut failures = Vec::new();
            for (host, port) in replicas.iter() {
                let addresses = match tokio::net::lookup_host((host.as_str(), *port)).await {
                    Ok(addresses) => addresses,
                    Err(err) => {
                        failures.push(format!("{host}: {err}"));
                        continue;
                    }
                };
                for address in addresses {
                    match tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        tokio::net::TcpStream::connect(address),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => {
                            stream.set_nodelay(true)?;
                            return Ok(hyper_util::rt::TokioIo::new(stream));
                        }
                        Ok(Err(err)) => failures.push(format!("{address}: {err}")),
                        Err(_) => failures
                            .push(format!("{address}: no answer within {CONNECT_TIMEOUT:?}")),
                    }
                }
            }
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                failures.join("; "),
            ))
        })
    }
}

/// Why a connection failed, with the likely fix: TLS trust problems name
/// `--ca-cert`, a plain address to a TLS port names `https://`.
fn unreachable_message(addr: &str, https: bool, err: &tonic::transport::Error) -> String {
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    let hint = if https && (chain.contains("certificate") || chain.contains("UnknownIssuer")) {
        "the control plane's TLS certificate is not trusted: pass --ca-cert (or set LAUNCH_CA_CERT) to the CA that signed it"
    } else if https && (chain.contains("InvalidContentType") || chain.contains("corrupt message")) {
        "the control plane does not speak TLS on that port: use http:// in --addr"
    } else if https {
        "is `launch server` running there with --tls-cert? set --addr or LAUNCH_ADDR"
    } else {
        "is `launch server` running there? if it serves TLS, use https:// in --addr (and --ca-cert); set --addr or LAUNCH_ADDR"
    };
    format!("cannot reach the control plane at {addr} ({chain}): {hint}")
}
