//! Minting, listing and revoking scoped API tokens (the handlers of
//! `CreateApiToken`, `ListApiTokens`, `RevokeApiToken`; only an admin gets
//! here, `authz` sees to that). A token is shown once, in the create
//! response; the store keeps its sha256, its scope and patterns, its expiry,
//! who made it and when it was last used.

use tonic::{Request, Response, Status};
use tracing::info;

use launch_proto::*;

use super::authz::{self, Caller, Scope};
use super::state::{State, internal};
use super::store::{ApiTokenRow, NewApiToken, now_ms};
use super::tokens;

/// The longest a token may live: ten years.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

pub fn info(row: &ApiTokenRow) -> ApiTokenInfo {
    ApiTokenInfo {
        token_id: row.id.clone(),
        name: row.name.clone(),
        scope: Scope::from_label(&row.scope)
            .map(Scope::to_proto)
            .unwrap_or_default() as i32,
        service: row.service_pattern.clone(),
        environment: row.environment_pattern.clone(),
        expires_unix_ms: row.expires.unwrap_or_default(),
        creator: row.creator.clone(),
        created_unix_ms: row.created,
        last_used_unix_ms: row.last_used.unwrap_or_default(),
        revoked: row.revoked,
    }
}

fn pattern(value: &str, what: &str) -> Result<String, Status> {
    let value = if value.is_empty() { "*" } else { value };
    if !authz::valid_pattern(value) {
        return Err(Status::invalid_argument(format!(
            "{what} pattern {value:?} is not valid: use a name of lower-case letters, digits and '-', where '*' matches anything (e.g. hello, '*', web-*)"
        )));
    }
    Ok(value.to_owned())
}

pub async fn create(
    state: &State,
    request: Request<CreateApiTokenRequest>,
) -> Result<Response<CreateApiTokenResponse>, Status> {
    let creator = request
        .extensions()
        .get::<Caller>()
        .map(Caller::id)
        .ok_or_else(|| internal("no caller on an authorized request"))?;
    let request = request.into_inner();
    let scope = TokenScope::try_from(request.scope)
        .ok()
        .and_then(Scope::from_proto)
        .ok_or_else(|| Status::invalid_argument("a token needs a scope: admin, deploy or read"))?;
    let service = pattern(&request.service, "service")?;
    let environment = pattern(&request.environment, "environment")?;
    if scope == Scope::Admin && (service != "*" || environment != "*") {
        return Err(Status::invalid_argument(
            "an admin token covers every service: drop --service and --env, or use --scope deploy or read",
        ));
    }
    let expires = match request.ttl_secs {
        0 => None,
        ttl => Some(now_ms() + (ttl.min(MAX_TTL_SECS) as i64) * 1000),
    };
    let token = tokens::mint(tokens::API_PREFIX);
    let id = tokens::new_id("t");
    let name = if request.name.is_empty() {
        format!("{}-{service}-{environment}", scope.label())
    } else {
        request.name
    };
    let row = state
        .store
        .insert_api_token(&NewApiToken {
            id: &id,
            hash: &tokens::hash(&token),
            name: &name,
            scope: scope.label(),
            service_pattern: &service,
            environment_pattern: &environment,
            expires,
            creator: &creator,
        })
        .await
        .map_err(internal)?;
    info!(token_id = %id, scope = scope.label(), service = %service, environment = %environment, creator = %creator, "API token created");
    Ok(Response::new(CreateApiTokenResponse {
        info: Some(info(&row)),
        token,
    }))
}

pub async fn list(state: &State) -> Result<Response<ListApiTokensResponse>, Status> {
    let tokens = state.store.api_tokens().await.map_err(internal)?;
    Ok(Response::new(ListApiTokensResponse {
        tokens: tokens.iter().map(info).collect(),
    }))
}

pub async fn revoke(
    state: &State,
    request: Request<RevokeApiTokenRequest>,
) -> Result<Response<RevokeApiTokenResponse>, Status> {
    let token_id = request.into_inner().token_id;
    if !state
        .store
        .revoke_api_token(&token_id)
        .await
        .map_err(internal)?
    {
        return Err(Status::not_found(format!(
            "no API token {token_id}: see `launch token list`"
        )));
    }
    state.revocations.revoke(&token_id);
    info!(token_id = %token_id, "API token revoked");
    Ok(Response::new(RevokeApiTokenResponse {}))
}
