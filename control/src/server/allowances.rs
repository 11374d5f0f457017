//! `launch services allow|disallow`: an admin grants or revokes host-policy
//! allowances for one service in one environment. Each allowance is parsed
//! by `launch_core::policy::Allowance` (so a typo is refused here, not
//! ignored on the host), stored with who granted it and when, and sent with
//! every later mission of that service; the agent enforces them.

use launch_core::policy::Allowance;
use launch_proto::{AllowServiceRequest, AllowanceInfo, AllowancesResponse};
use tonic::Status;
use tonic::metadata::MetadataMap;
use tracing::info;

use super::state::{State, internal};
use super::tokens;

/// What to do with the allowances of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Allow,
    Disallow,
}

/// Who is asking, for the record: `admin`, or the API token's hash prefix.
fn who(state: &State, metadata: &MetadataMap) -> String {
    let hash = tokens::bearer(metadata)
        .map(|t| tokens::hash(&t))
        .unwrap_or_default();
    if hash == state.admin_hash {
        "admin".to_owned()
    } else {
        format!("token sha256:{}", &hash[..hash.len().min(12)])
    }
}

/// The allowances of a request, each checked and in canonical spelling.
fn parse(request: &AllowServiceRequest) -> Result<Vec<String>, Status> {
    if request.allowances.is_empty() {
        return Err(Status::invalid_argument(format!(
            "name at least one allowance: {}",
            launch_core::policy::ALLOWANCE_KINDS
        )));
    }
    request
        .allowances
        .iter()
        .map(|text| {
            text.parse::<Allowance>()
                .map(|a| a.to_string())
                .map_err(Status::invalid_argument)
        })
        .collect()
}

pub async fn change(
    state: &State,
    metadata: &MetadataMap,
    service: &str,
    environment: &str,
    request: &AllowServiceRequest,
    change: Change,
) -> Result<AllowancesResponse, Status> {
    let allowances = parse(request)?;
    match change {
        Change::Allow => {
            let by = who(state, metadata);
            state
                .store
                .allow(service, environment, &allowances, &by)
                .await
                .map_err(internal)?;
            info!(service, environment, ?allowances, granted_by = %by, "host-policy allowances granted");
        }
        Change::Disallow => {
            state
                .store
                .disallow(service, environment, &allowances)
                .await
                .map_err(internal)?;
            info!(
                service,
                environment,
                ?allowances,
                "host-policy allowances revoked"
            );
        }
    }
    list(state, service, environment).await
}

pub async fn list(
    state: &State,
    service: &str,
    environment: &str,
) -> Result<AllowancesResponse, Status> {
    let allowances = state
        .store
        .allowances(service, environment)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|row| AllowanceInfo {
            allowance: row.allowance,
            granted_by: row.granted_by,
            granted_unix_ms: row.granted,
        })
        .collect();
    Ok(AllowancesResponse { allowances })
}
