//! Connecting to the control plane: the address, the bearer token (flag, env
//! or file) and message-size limits, in one place for every command.

use std::str::FromStr;

use launch_proto::Bearer;
use launch_proto::control_service_client::ControlServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

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
    connect_with(&global.addr, &token).await
}

pub async fn connect_with(addr: &str, token: &str) -> Result<Client, CliError> {
    let endpoint = Endpoint::from_str(addr).map_err(|e| {
        CliError::usage(format!(
            "--addr {addr:?} is not a URL ({e}); give e.g. http://127.0.0.1:7400"
        ))
    })?;
    let channel = endpoint
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| {
            CliError::unreachable(format!(
                "cannot reach the control plane at {addr} ({e}): is `launch server` running there? set --addr or LAUNCH_ADDR"
            ))
        })?;
    let bearer = Bearer::new(token).ok_or_else(|| {
        CliError::usage("the token contains characters that cannot be sent; check LAUNCH_TOKEN")
    })?;
    Ok(ControlServiceClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(launch_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(launch_proto::MAX_MESSAGE_BYTES))
}
