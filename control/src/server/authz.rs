//! Who may call what on `ControlService`, decided in one place. [`Authorize`]
//! wraps the generated server: it authenticates the bearer token (the admin
//! token or a scoped API token), looks the gRPC path up in [`RULES`], and for
//! rules that concern one service reads the request's first message to learn
//! its target (a mission id is resolved to its service) before the handler
//! runs. A path without a rule is refused, and a test walks the service
//! descriptor so an RPC cannot be added without one. The handlers never check
//! tokens; they find the [`Caller`] in the request's extensions.
//!
//! A streamed response (`logs -f`, `WatchMission`) ends with `Unauthenticated`
//! as soon as its token is revoked or expires.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tracing::info;

use launch_proto::*;

use super::state::{State, internal};
use super::store::{ApiTokenRow, now_ms};
use super::tokens;

mod body;
mod rules;
use body::{EndWhen, first_message};
pub use rules::{RULES, Rule, Subject, rule_for};

/// What a token may do; each scope includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Deploy,
    Admin,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Deploy => "deploy",
            Scope::Admin => "admin",
        }
    }

    /// `an admin token`, `a deploy token`, `a read token`.
    fn token(self) -> &'static str {
        match self {
            Scope::Read => "a read token",
            Scope::Deploy => "a deploy token",
            Scope::Admin => "an admin token",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        Some(match label {
            "read" => Scope::Read,
            "deploy" => Scope::Deploy,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }

    pub fn from_proto(scope: TokenScope) -> Option<Self> {
        Some(match scope {
            TokenScope::Unspecified => return None,
            TokenScope::Read => Scope::Read,
            TokenScope::Deploy => Scope::Deploy,
            TokenScope::Admin => Scope::Admin,
        })
    }

    pub fn to_proto(self) -> TokenScope {
        match self {
            Scope::Read => TokenScope::Read,
            Scope::Deploy => TokenScope::Deploy,
            Scope::Admin => TokenScope::Admin,
        }
    }
}

/// The authenticated caller of a control RPC, in the request's extensions.
#[derive(Clone, Debug)]
pub struct Caller {
    /// `None` for the admin token of the data dir.
    pub token_id: Option<String>,
    pub name: String,
    pub scope: Scope,
    pub service_pattern: String,
    pub environment_pattern: String,
    pub expires: Option<i64>,
}

impl Caller {
    fn admin() -> Self {
        Caller {
            token_id: None,
            name: "admin".to_owned(),
            scope: Scope::Admin,
            service_pattern: "*".to_owned(),
            environment_pattern: "*".to_owned(),
            expires: None,
        }
    }

    /// Who created something, as recorded in the store.
    pub fn id(&self) -> String {
        self.token_id.clone().unwrap_or_else(|| "admin".to_owned())
    }

    fn covers(&self, service: &str, environment: &str) -> bool {
        matches(&self.service_pattern, service) && matches(&self.environment_pattern, environment)
    }

    fn covers_everything(&self) -> bool {
        self.service_pattern == "*" && self.environment_pattern == "*"
    }

    fn describe(&self) -> String {
        match &self.token_id {
            None => "the admin token".to_owned(),
            Some(id) => format!(
                "this {} token ({id}, {:?}) for {}/{}",
                self.scope.label(),
                self.name,
                self.service_pattern,
                self.environment_pattern
            ),
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn matches(pattern: &str, name: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == name;
    };
    let Some(mut remaining) = name.strip_prefix(head) else {
        return false;
    };
    let mut parts = rest.split('*').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return remaining.len() >= part.len() && remaining.ends_with(part);
        }
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// A service or environment pattern is a DNS label that may hold `*`.
pub fn valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= 63
        && pattern
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '*')
}

/// Streams to end when their token is revoked, by token id.
#[derive(Debug, Default)]
pub struct Revocations {
    watches: Mutex<HashMap<String, CancellationToken>>,
}

impl Revocations {
    fn watch(&self, token_id: &str) -> CancellationToken {
        self.watches
            .lock()
            .expect("revocations lock")
            .entry(token_id.to_owned())
            .or_default()
            .clone()
    }

    /// Ends every open stream of the token.
    pub fn revoke(&self, token_id: &str) {
        if let Some(watch) = self
            .watches
            .lock()
            .expect("revocations lock")
            .remove(token_id)
        {
            watch.cancel();
        }
    }
}

/// The authorization layer around the generated `ControlServiceServer`.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> Authorize<S> {
    pub fn new(inner: S, state: Arc<State>) -> Self {
        Authorize { inner, state }
    }
}

impl<S: NamedService> NamedService for Authorize<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Authorize<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone is not ready; the instance that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            match authorize(&state, request).await {
                Ok((request, end)) => {
                    let response = inner.call(request).await?;
                    Ok(match end {
                        Some(end) => response.map(|body| Body::new(EndWhen::new(body, end))),
                        None => response,
                    })
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

pub type EndFuture = Pin<Box<dyn Future<Output = Status> + Send>>;

/// Checks the call; returns the request (its body intact) with the caller in
/// its extensions, and what ends the response early (a scoped token's
/// revocation or expiry).
async fn authorize(
    state: &State,
    mut request: http::Request<Body>,
) -> Result<(http::Request<Body>, Option<EndFuture>), Status> {
    let path = request.uri().path().to_owned();
    let method = path.rsplit('/').next().unwrap_or_default().to_owned();
    let rule = rule_for(&path).ok_or_else(|| {
        Status::permission_denied(format!(
            "{path} has no authorization rule, so nobody may call it: add it to RULES in control/src/server/authz.rs"
        ))
    })?;
    let caller = authenticate(state, request.headers()).await?;
    if caller.scope < rule.scope {
        info!(method = %method, token_id = ?caller.token_id, "permission denied: scope");
        return Err(Status::permission_denied(format!(
            "{method} needs {}; {} cannot: ask an admin for one (`launch token create --scope {}`)",
            rule.scope.token(),
            caller.describe(),
            rule.scope.label()
        )));
    }
    if caller.scope < Scope::Admin {
        let subject = match rule.subject {
            None => Subject::Fleet,
            Some(extract) => {
                let (message, body) = first_message(std::mem::take(request.body_mut())).await?;
                *request.body_mut() = body;
                extract(&message).map_err(|err| {
                    Status::invalid_argument(format!("cannot decode the {method} request: {err}"))
                })?
            }
        };
        check_subject(state, &caller, rule.scope, &method, subject).await?;
    }
    let end = end_of(state, &caller);
    request.extensions_mut().insert(caller);
    Ok((request, end))
}

async fn check_subject(
    state: &State,
    caller: &Caller,
    scope: Scope,
    method: &str,
    subject: Subject,
) -> Result<(), Status> {
    let (service, environment) = match subject {
        Subject::Fleet if caller.covers_everything() => return Ok(()),
        Subject::Itself => return Ok(()),
        Subject::Fleet => {
            return Err(Status::permission_denied(format!(
                "{method} concerns every service, so it needs {} for --service '*' --env '*'; {} cannot",
                scope.token(),
                caller.describe()
            )));
        }
        Subject::Service {
            service,
            environment,
        } => (service, environment),
        // An unknown mission: the handler says it does not exist.
        Subject::Mission(id) => match state.store.mission(&id).await.map_err(internal)? {
            Some(mission) => (mission.service, mission.environment),
            None => return Ok(()),
        },
    };
    if caller.covers(&service, &environment) {
        return Ok(());
    }
    info!(method = %method, service = %service, environment = %environment, token_id = ?caller.token_id, "permission denied: target");
    Err(Status::permission_denied(format!(
        "{method} on {service}/{environment} needs {} for {service}/{environment}; {} cannot",
        scope.token(),
        caller.describe()
    )))
}

/// The caller behind the bearer token; unknown, revoked and expired tokens
/// are Unauthenticated, an agent's token is PermissionDenied.
async fn authenticate(state: &State, headers: &http::HeaderMap) -> Result<Caller, Status> {
    let unauthenticated = |why: &str| {
        Status::unauthenticated(format!(
            "{why}: pass --token or set LAUNCH_TOKEN (the admin token is in {})",
            state.data_dir.join(super::ADMIN_TOKEN_FILE).display()
        ))
    };
    let metadata = MetadataMap::from_headers(headers.clone());
    let Some(token) = tokens::bearer(&metadata) else {
        return Err(unauthenticated("missing token"));
    };
    authenticate_token(state, &token).await
}

/// What ends a stream served for `token` outside a control call (the
/// dashboard's shared log stream, authorized by a control call first): the
/// same revocation or expiry that ends a control call's response, `None`
/// when nothing does. A token refused now is refused here.
pub async fn stream_end(state: &State, token: &str) -> Result<Option<EndFuture>, Status> {
    let caller = authenticate_token(state, token).await?;
    Ok(end_of(state, &caller))
}

async fn authenticate_token(state: &State, token: &str) -> Result<Caller, Status> {
    let unauthenticated = |why: &str| {
        Status::unauthenticated(format!(
            "{why}: pass --token or set LAUNCH_TOKEN (the admin token is in {})",
            state.data_dir.join(super::ADMIN_TOKEN_FILE).display()
        ))
    };
    let hash = tokens::hash(token);
    if hash == state.admin_hash {
        return Ok(Caller::admin());
    }
    if let Some(row) = state
        .store
        .api_token_by_hash(&hash)
        .await
        .map_err(internal)?
    {
        return caller_of(state, row).await;
    }
    if state
        .store
        .agent_by_token_hash(&hash)
        .await
        .map_err(internal)?
        .is_some()
    {
        return Err(Status::permission_denied(
            "an agent token cannot call the control service: use the admin token or an API token",
        ));
    }
    Err(unauthenticated("unknown token"))
}

async fn caller_of(state: &State, row: ApiTokenRow) -> Result<Caller, Status> {
    if row.revoked {
        return Err(Status::unauthenticated(format!(
            "token {} ({:?}) was revoked: ask an admin for a new one (`launch token create --scope …`)",
            row.id, row.name
        )));
    }
    if row.expires.is_some_and(|expires| expires <= now_ms()) {
        return Err(Status::unauthenticated(format!(
            "token {} ({:?}) has expired: ask an admin for a new one (`launch token create --scope … --ttl …`)",
            row.id, row.name
        )));
    }
    let scope = Scope::from_label(&row.scope).ok_or_else(|| internal("unknown token scope"))?;
    state
        .store
        .touch_api_token(&row.id)
        .await
        .map_err(internal)?;
    Ok(Caller {
        token_id: Some(row.id),
        name: row.name,
        scope,
        service_pattern: row.service_pattern,
        environment_pattern: row.environment_pattern,
        expires: row.expires,
    })
}

/// What ends a scoped token's response: its revocation or its expiry.
fn end_of(state: &State, caller: &Caller) -> Option<EndFuture> {
    let token_id = caller.token_id.clone()?;
    let revoked = state.revocations.watch(&token_id);
    let expires = caller.expires;
    Some(Box::pin(async move {
        let until_expiry = async {
            match expires {
                Some(at) => {
                    let left = (at - now_ms()).max(0) as u64;
                    tokio::time::sleep(std::time::Duration::from_millis(left)).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = revoked.cancelled_owned() => Status::unauthenticated(format!(
                "token {token_id} was revoked: the stream ends here"
            )),
            () = until_expiry => Status::unauthenticated(format!(
                "token {token_id} has expired: the stream ends here"
            )),
        }
    }))
}

#[cfg(test)]
mod tests;
