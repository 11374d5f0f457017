//! Connecting to the control plane: the address, the bearer token (flag, env
//! or file), TLS for `https://` addresses (the `--ca-cert` CA, else the
//! system's roots) and message-size limits, in one place for every command.

use std::path::Path;
use std::str::FromStr;

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
    let mut endpoint = Endpoint::from_str(addr).map_err(|e| {
        CliError::usage(format!(
            "--addr {addr:?} is not a URL ({e}); give e.g. http://127.0.0.1:7400"
        ))
    })?;
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
    let channel = endpoint
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| CliError::unreachable(unreachable_message(addr, https, &e)))?;
    let bearer = Bearer::new(token).ok_or_else(|| {
        CliError::usage("the token contains characters that cannot be sent; check LAUNCH_TOKEN")
    })?;
    Ok(ControlServiceClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(launch_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(launch_proto::MAX_MESSAGE_BYTES))
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
