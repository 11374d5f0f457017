//! The dashboard (`/`, issue 15): server-rendered HTML (askama templates in
//! `control/templates/dashboard`), htmx for fragments and forms, server-sent
//! events for live state and logs, on the same port and TLS as gRPC.
//!
//! The dashboard decides nothing about who may do what. Every read and every
//! action is a `ControlService` call made in-process through the same
//! `authz::Authorize` service the CLI reaches over the network, carrying the
//! session's API token as its bearer: a read token's button press is refused
//! by the same rule that refuses `launch rollback` with it. The dashboard only
//! owns its sessions (who is logged in, with which token) and CSRF tokens.
//!
//! # Layout
//! - `session`: login, logout, the session cookie and the extractors that
//!   turn it into a [`session::Session`].
//! - `csrf`: the per-session token every state-changing POST carries.
//! - `pages`: the pages and fragments (services, mission, agents) and what
//!   every page shares; `service_page`: one service and its live fragments.
//! - `actions`: the POSTs (activate, redeploy, remove preview, secrets).
//! - `sse`: the fleet event stream and the resumable mission log stream;
//!   `follow`: a mission's log rendered once and shared by its followers.
//! - `search`: the services search (AND of terms) and its suggestions.
//! - `ansi`: log text to escaped HTML with ANSI colours as classes.
//! - `assets`: the embedded htmx, script and stylesheet.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use tonic::Code;

use launch_proto::control_service_client::ControlServiceClient;
use launch_proto::control_service_server::ControlServiceServer;

use super::authz::Authorize;
use super::control_service::Control;
use super::state::State;

mod actions;
pub mod ansi;
pub mod assets;
mod csrf;
pub mod follow;
mod history;
mod pages;
mod rendered;
mod search;
mod service_page;
pub mod session;
mod sse;

/// The control service as the network sees it: the generated server inside
/// the authorization layer.
pub type AuthorizedControl = Authorize<ControlServiceServer<Control>>;

/// A client of [`AuthorizedControl`] that calls it in-process.
pub type ControlClient = ControlServiceClient<AuthorizedControl>;

/// What the dashboard's handlers share.
pub struct Dash {
    pub state: Arc<State>,
    control: ControlClient,
    /// The followed missions' shared log renderings.
    pub follows: Arc<follow::Follows>,
    /// Served over TLS: cookies are `Secure`.
    pub secure: bool,
}

impl Dash {
    pub fn new(state: Arc<State>, control: AuthorizedControl, secure: bool) -> Self {
        Dash {
            state,
            control: ControlServiceClient::new(control)
                .max_decoding_message_size(launch_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(launch_proto::MAX_MESSAGE_BYTES),
            follows: Arc::default(),
            secure,
        }
    }

    /// A client to make one call with.
    pub fn control(&self) -> ControlClient {
        self.control.clone()
    }
}

/// What a route needs before its handler runs, and how it refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Login and the static assets.
    Public,
    /// A whole page: without a session, a redirect to `/login`.
    Page,
    /// A piece of a page htmx fetches: without a session, 401.
    Fragment,
    /// An event stream: without a session, 401.
    Stream,
    /// A state-changing POST: 401 without a session, 403 without its CSRF token.
    Action,
}

/// One route of the dashboard: its pattern, what it needs, and a concrete
/// path to request it by (tests walk this list).
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub pattern: &'static str,
    pub access: Access,
    pub example: &'static str,
}

const fn route(pattern: &'static str, access: Access, example: &'static str) -> Route {
    Route {
        pattern,
        access,
        example,
    }
}

/// Every route of the dashboard with its handler; [`router`] is built from
/// exactly this list.
pub fn routes() -> Vec<(Route, MethodRouter<Arc<Dash>>)> {
    use Access::*;
    vec![
        (
            route("/login", Public, "/login"),
            get(session::login_form).post(session::login),
        ),
        (
            route("/assets/{file}", Public, "/assets/dash.css"),
            get(assets::serve),
        ),
        (route("/logout", Action, "/logout"), post(session::logout)),
        (route("/", Page, "/"), get(pages::services)),
        (route("/agents", Page, "/agents"), get(pages::agents)),
        (
            route(
                "/services/{service}/{environment}",
                Page,
                "/services/hello/prod",
            ),
            get(service_page::service),
        ),
        (
            route("/missions/{mission_id}", Page, "/missions/m-none"),
            get(pages::mission),
        ),
        (
            route("/fragments/services", Fragment, "/fragments/services?q=a"),
            get(pages::services_rows),
        ),
        (
            route("/fragments/suggest", Fragment, "/fragments/suggest?q=e"),
            get(pages::suggest),
        ),
        (
            route(
                "/fragments/service-row/{service}/{environment}",
                Fragment,
                "/fragments/service-row/hello/prod",
            ),
            get(pages::service_row),
        ),
        (
            route(
                "/fragments/service-head/{service}/{environment}",
                Fragment,
                "/fragments/service-head/hello/prod",
            ),
            get(service_page::service_head),
        ),
        (
            route(
                "/fragments/releases/{service}/{environment}",
                Fragment,
                "/fragments/releases/hello/prod",
            ),
            get(service_page::releases),
        ),
        (route("/events", Stream, "/events"), get(sse::events)),
        (
            route(
                "/missions/{mission_id}/stream",
                Stream,
                "/missions/m-none/stream",
            ),
            get(sse::mission_log),
        ),
        (
            route(
                "/services/{service}/{environment}/activate",
                Action,
                "/services/hello/prod/activate",
            ),
            post(actions::activate),
        ),
        (
            route(
                "/services/{service}/{environment}/redeploy",
                Action,
                "/services/hello/prod/redeploy",
            ),
            post(actions::redeploy),
        ),
        (
            route(
                "/services/{service}/{environment}/previews/{preview}/remove",
                Action,
                "/services/hello/prod/previews/pr-1/remove",
            ),
            post(actions::remove_preview),
        ),
        (
            route(
                "/services/{service}/{environment}/secrets",
                Action,
                "/services/hello/prod/secrets",
            ),
            post(actions::set_secret),
        ),
        (
            route(
                "/services/{service}/{environment}/secrets/{key}/remove",
                Action,
                "/services/hello/prod/secrets/API_KEY/remove",
            ),
            post(actions::remove_secret),
        ),
    ]
}

/// The dashboard's routes, to merge into the server's router.
pub fn router(dash: Arc<Dash>) -> Router {
    let mut router = Router::new();
    for (route, handler) in routes() {
        router = router.route(route.pattern, handler);
    }
    router
        .layer(axum::middleware::map_response(security_headers))
        .with_state(dash)
}

/// Headers every dashboard response carries: no framing, no sniffing, no
/// script but our own, no caching of pages that show state.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A refused or failed control call, as a page or fragment shows it.
#[derive(Debug)]
pub struct Failure {
    pub status: tonic::Status,
    /// Whole page (redirect to login) or fragment/stream (401).
    pub page: bool,
}

impl Failure {
    pub fn page(status: tonic::Status) -> Self {
        Failure { status, page: true }
    }

    pub fn fragment(status: tonic::Status) -> Self {
        Failure {
            status,
            page: false,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let message = self.status.message().to_owned();
        let code = match self.status.code() {
            Code::Unauthenticated if self.page => {
                return Redirect::to("/login").into_response();
            }
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => {
                StatusCode::BAD_REQUEST
            }
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => {
                tracing::error!(cause = %self.status, "dashboard: control call failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
            }
        };
        let body = pages::ErrorPage {
            code: code.as_u16(),
            message,
        };
        (code, pages::html(&body)).into_response()
    }
}
