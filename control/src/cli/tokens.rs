//! Scoped API tokens from the command line: `token create --scope
//! admin|deploy|read [--service S] [--env E] [--ttl 30d] [--name N]` prints
//! the token once (stdout, so `$(launch token create …)` captures it), `token
//! list` shows what exists without any secret, `token revoke ID` cuts one
//! off. What each scope may do is decided by the control plane alone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use launch_proto::{
    ApiTokenInfo, CreateApiTokenRequest, ListApiTokensRequest, RevokeApiTokenRequest, TokenScope,
};
use serde_json::{Value, json};

use super::client;
use super::output::table;
use super::{CliError, Global, Output, exit};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopeArg {
    Admin,
    Deploy,
    Read,
}

impl ScopeArg {
    fn proto(self) -> TokenScope {
        match self {
            ScopeArg::Admin => TokenScope::Admin,
            ScopeArg::Deploy => TokenScope::Deploy,
            ScopeArg::Read => TokenScope::Read,
        }
    }
}

fn scope_label(scope: i32) -> &'static str {
    match TokenScope::try_from(scope) {
        Ok(TokenScope::Admin) => "admin",
        Ok(TokenScope::Deploy) => "deploy",
        Ok(TokenScope::Read) => "read",
        _ => "unknown",
    }
}

/// Checks the flags of `token create --scope` before anything is sent.
pub fn create_request(
    scope: ScopeArg,
    service: Option<String>,
    environment: Option<String>,
    ttl: Option<Duration>,
    name: Option<String>,
) -> Result<CreateApiTokenRequest, CliError> {
    if scope == ScopeArg::Admin && (service.is_some() || environment.is_some()) {
        return Err(CliError::usage(
            "an admin token covers every service: drop --service and --env, or use --scope deploy or read",
        ));
    }
    if scope == ScopeArg::Deploy && service.is_none() {
        return Err(CliError::usage(
            "a deploy token needs --service (and usually --env): name the service CI deploys, or --service '*' for all of them",
        ));
    }
    let service = service.unwrap_or_else(|| "*".to_owned());
    let environment = environment.unwrap_or_else(|| "*".to_owned());
    for (flag, pattern) in [("--service", &service), ("--env", &environment)] {
        if !crate::server::authz::valid_pattern(pattern) {
            return Err(CliError::usage(format!(
                "{flag} {pattern:?} is not a name pattern: use lower-case letters, digits and '-', where '*' matches anything (e.g. hello, '*', web-*)"
            )));
        }
    }
    Ok(CreateApiTokenRequest {
        scope: scope.proto() as i32,
        service,
        environment,
        ttl_secs: ttl.map(|ttl| ttl.as_secs().max(1)).unwrap_or(0),
        name: name.unwrap_or_default(),
    })
}

pub async fn create(global: &Global, request: CreateApiTokenRequest) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let response = client
        .create_api_token(request)
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner();
    let info = response.info.unwrap_or_default();
    match global.output {
        Output::Json => {
            let mut value = token_json(&info);
            value["token"] = json!(response.token);
            println!("{value}");
        }
        Output::Text => {
            println!("{}", response.token);
            eprintln!(
                "{} token {} ({}) for {}/{}, expires {}: shown once, store it as a secret now",
                scope_label(info.scope),
                info.token_id,
                info.name,
                info.service,
                info.environment,
                time(info.expires_unix_ms, "never"),
            );
        }
    }
    Ok(exit::OK)
}

pub async fn list(global: &Global) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let tokens = client
        .list_api_tokens(ListApiTokensRequest {})
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner()
        .tokens;
    match global.output {
        Output::Json => println!(
            "{}",
            json!({ "tokens": tokens.iter().map(token_json).collect::<Vec<_>>() })
        ),
        Output::Text => table(
            &[
                "ID",
                "NAME",
                "SCOPE",
                "SERVICE",
                "ENV",
                "EXPIRES",
                "LAST USED",
                "CREATOR",
                "STATE",
            ],
            &tokens
                .iter()
                .map(|t| {
                    vec![
                        t.token_id.clone(),
                        t.name.clone(),
                        scope_label(t.scope).to_owned(),
                        t.service.clone(),
                        t.environment.clone(),
                        time(t.expires_unix_ms, "never"),
                        time(t.last_used_unix_ms, "-"),
                        t.creator.clone(),
                        if t.revoked { "revoked" } else { "active" }.to_owned(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
    Ok(exit::OK)
}

pub async fn revoke(global: &Global, token_id: &str) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    client
        .revoke_api_token(RevokeApiTokenRequest {
            token_id: token_id.to_owned(),
        })
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?;
    if global.output == Output::Text {
        eprintln!("revoked {token_id}: it is refused from now on and its open streams have ended");
    }
    Ok(exit::OK)
}

fn token_json(t: &ApiTokenInfo) -> Value {
    json!({
        "token_id": t.token_id,
        "name": t.name,
        "scope": scope_label(t.scope),
        "service": t.service,
        "environment": t.environment,
        "expires_unix_ms": t.expires_unix_ms,
        "creator": t.creator,
        "created_unix_ms": t.created_unix_ms,
        "last_used_unix_ms": t.last_used_unix_ms,
        "revoked": t.revoked,
    })
}

/// An RFC 3339 time in UTC, or `none` for 0.
fn time(unix_ms: i64, none: &str) -> String {
    if unix_ms <= 0 {
        return none.to_owned();
    }
    let at = UNIX_EPOCH + Duration::from_millis(unix_ms as u64);
    humantime::format_rfc3339_seconds(at.max(SystemTime::UNIX_EPOCH)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_token_without_a_service_is_bad_input() {
        let err =
            create_request(ScopeArg::Deploy, None, Some("prod".into()), None, None).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("--service"), "{}", err.message);
    }

    #[test]
    fn an_admin_token_with_a_service_is_bad_input() {
        let err =
            create_request(ScopeArg::Admin, Some("hello".into()), None, None, None).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
    }

    #[test]
    fn a_read_token_defaults_to_every_service_and_no_expiry() {
        let request = create_request(ScopeArg::Read, None, None, None, None).unwrap();
        assert_eq!(request.service, "*");
        assert_eq!(request.environment, "*");
        assert_eq!(request.ttl_secs, 0);
        let request = create_request(
            ScopeArg::Deploy,
            Some("hello".into()),
            Some("prod".into()),
            Some(Duration::from_secs(30 * 86400)),
            Some("ci-hello".into()),
        )
        .unwrap();
        assert_eq!(request.scope, TokenScope::Deploy as i32);
        assert_eq!(request.ttl_secs, 30 * 86400);
        assert_eq!(request.name, "ci-hello");
    }
}
