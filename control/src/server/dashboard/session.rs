//! Who is logged in to the dashboard. `POST /login` takes an API token (or
//! the admin token), asks `WhoAmI` through the authorization layer whether
//! it is valid, and creates a session: a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` under TLS), stored only as its sha256,
//! with the token sealed under a key derived from the id (see migration
//! 0026). Each request opens the token again and makes its control calls
//! with it, so a revoked or expired token fails at `authz` like anywhere
//! else; such a failure deletes the session. Logging in is itself protected
//! by a CSRF token held in a short-lived cookie (double submit).

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, State as Extract};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use launch_proto::WhoAmIRequest;

use super::super::authz::Scope;
use super::super::secrets::SecretBox;
use super::super::store::{DashboardSessionRow, now_ms};
use super::super::tokens;
use super::{Dash, Failure, csrf, pages};

pub const COOKIE: &str = "launch_session";
const LOGIN_COOKIE: &str = "launch_login";
/// How long a session lives.
pub const LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// The address a session's token is sealed under (AES-GCM associated data).
const SEAL_ADDRESS: &str = "dashboard-session-token";

/// A logged-in user: the token to call with and what to show.
#[derive(Clone)]
pub struct Session {
    id_hash: String,
    token: String,
    pub csrf: String,
    pub name: String,
    pub scope: Scope,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// `message` as a request carrying the session's token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(value) = format!("Bearer {}", self.token).parse() {
            request
                .metadata_mut()
                .insert(launch_proto::AUTHORIZATION, value);
        }
        request
    }

    /// What ends a stream the dashboard serves for this session itself: the
    /// token's revocation or expiry, as `authz` ends a control call's.
    pub async fn stream_end(
        &self,
        dash: &Dash,
    ) -> Result<Option<super::super::authz::EndFuture>, Failure> {
        let end = super::super::authz::stream_end(&dash.state, &self.token).await;
        self.outcome(dash, end.map(tonic::Response::new), false)
            .await
    }

    /// May press deploy buttons (activate, redeploy, remove preview).
    pub fn can_deploy(&self) -> bool {
        self.scope >= Scope::Deploy
    }

    pub fn is_admin(&self) -> bool {
        self.scope >= Scope::Admin
    }

    /// The result of a control call; a refused token ends the session.
    pub async fn outcome<T>(
        &self,
        dash: &Dash,
        result: Result<tonic::Response<T>, Status>,
        page: bool,
    ) -> Result<T, Failure> {
        match result {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => {
                if status.code() == Code::Unauthenticated {
                    self.end(dash).await;
                }
                Err(Failure { status, page })
            }
        }
    }

    /// Deletes the session.
    pub async fn end(&self, dash: &Dash) {
        if let Err(err) = dash
            .state
            .store
            .delete_dashboard_session(&self.id_hash)
            .await
        {
            tracing::error!(cause = %err, "dashboard: cannot delete a session");
        }
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The key a session's token is sealed with: derived from the session id,
/// which only the browser holds.
fn session_box(id: &str) -> SecretBox {
    let mut hasher = Sha256::new();
    hasher.update(b"launch dashboard session key\0");
    hasher.update(id.as_bytes());
    SecretBox::new(hasher.finalize().into())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn set_cookie(dash: &Dash, name: &str, value: &str, max_age_secs: i64) -> String {
    let secure = if dash.secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

/// The session of a request, if its cookie names a live one.
pub async fn find(dash: &Dash, headers: &HeaderMap) -> Result<Option<Session>, Status> {
    let Some(id) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    let id_hash = sha256_hex(&id);
    let Some(row) = dash
        .state
        .store
        .dashboard_session(&id_hash)
        .await
        .map_err(super::super::state::internal)?
    else {
        return Ok(None);
    };
    let Ok(token) = session_box(&id).open(SEAL_ADDRESS, &row.token_nonce, &row.token_sealed) else {
        return Ok(None);
    };
    Ok(Some(Session {
        id_hash,
        token,
        csrf: row.csrf,
        name: row.name,
        scope: Scope::from_label(&row.scope).unwrap_or(Scope::Read),
    }))
}

/// A session for a whole page: without one, a redirect to `/login`.
pub struct PageSession(pub Session);

/// A session for a fragment, stream or action: without one, 401.
pub struct ApiSession(pub Session);

impl FromRequestParts<Arc<Dash>> for PageSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &Arc<Dash>) -> Result<Self, Response> {
        match find(dash, &parts.headers).await {
            Ok(Some(session)) => Ok(PageSession(session)),
            Ok(None) => Err(Redirect::to("/login").into_response()),
            Err(status) => Err(Failure::page(status).into_response()),
        }
    }
}

impl FromRequestParts<Arc<Dash>> for ApiSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &Arc<Dash>) -> Result<Self, Response> {
        match find(dash, &parts.headers).await {
            Ok(Some(session)) => Ok(ApiSession(session)),
            Ok(None) => Err((
                StatusCode::UNAUTHORIZED,
                [("HX-Redirect", "/login")],
                "log in first: /login\n",
            )
                .into_response()),
            Err(status) => Err(Failure::fragment(status).into_response()),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage {
    csrf: String,
    error: String,
}

/// `GET /login`: the form, with a fresh login CSRF token in a cookie.
pub async fn login_form(Extract(dash): Extract<Arc<Dash>>) -> Response {
    login_page(&dash, StatusCode::OK, String::new())
}

fn login_page(dash: &Dash, code: StatusCode, error: String) -> Response {
    let csrf = csrf::new_token();
    let page = LoginPage {
        csrf: csrf.clone(),
        error,
    };
    (
        code,
        [(
            header::SET_COOKIE,
            set_cookie(dash, LOGIN_COOKIE, &csrf, 600),
        )],
        pages::html(&page),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /login`: checks the token with `WhoAmI` and starts a session.
pub async fn login(
    Extract(dash): Extract<Arc<Dash>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !csrf::same(&expected, &form.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "the login form expired: reload /login\n",
        )
            .into_response();
    }
    let token = form.token.trim().to_owned();
    let mut request = tonic::Request::new(WhoAmIRequest {});
    match format!("Bearer {token}").parse() {
        Ok(value) => {
            request
                .metadata_mut()
                .insert(launch_proto::AUTHORIZATION, value);
        }
        Err(_) => {
            return login_page(
                &dash,
                StatusCode::UNAUTHORIZED,
                "that is not a token: paste an API token or the admin token".to_owned(),
            );
        }
    }
    let who = match dash.control().who_am_i(request).await {
        Ok(who) => who.into_inner(),
        Err(status) => {
            let message = match status.code() {
                Code::Unauthenticated | Code::PermissionDenied => {
                    "the control plane refused this token: check it, or ask an admin for one (`launch token create`)".to_owned()
                }
                _ => {
                    tracing::error!(cause = %status, "dashboard: login failed");
                    "internal error: see the control plane's log".to_owned()
                }
            };
            return login_page(&dash, StatusCode::UNAUTHORIZED, message);
        }
    };
    let scope = Scope::from_proto(who.scope()).unwrap_or(Scope::Read);
    let id = tokens::mint("lds_");
    let (token_nonce, token_sealed) = session_box(&id).seal(SEAL_ADDRESS, &token);
    let now = now_ms();
    let row = DashboardSessionRow {
        id_hash: sha256_hex(&id),
        token_hash: tokens::hash(&token),
        token_nonce,
        token_sealed,
        csrf: csrf::new_token(),
        name: who.name,
        scope: scope.label().to_owned(),
        created: now,
        expires: now + LIFETIME_MS,
    };
    if let Err(err) = dash.state.store.insert_dashboard_session(&row).await {
        tracing::error!(cause = %err, "dashboard: cannot store a session");
        return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
    }
    if let Err(err) = dash.state.store.delete_expired_dashboard_sessions().await {
        tracing::warn!(cause = %err, "dashboard: cannot sweep expired sessions");
    }
    (
        AppendHeaders([
            (
                header::SET_COOKIE,
                set_cookie(&dash, COOKIE, &id, LIFETIME_MS / 1000),
            ),
            (header::SET_COOKIE, set_cookie(&dash, LOGIN_COOKIE, "", 0)),
        ]),
        Redirect::to("/"),
    )
        .into_response()
}

/// `POST /logout`: ends the session (with its CSRF token).
pub async fn logout(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    headers: HeaderMap,
    Form(form): Form<csrf::CsrfForm>,
) -> Response {
    if let Err(refused) = csrf::check(&session, &headers, &form.csrf) {
        return refused.into_response();
    }
    session.end(&dash).await;
    (
        [(header::SET_COOKIE, set_cookie(&dash, COOKIE, "", 0))],
        Redirect::to("/login"),
    )
        .into_response()
}
