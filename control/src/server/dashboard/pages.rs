//! The dashboard's pages and fragments: Services (with the search and its
//! suggestions), one Mission (its live log), Agents, and what every page
//! shares (the frame, status labels, ages); one Service is `service_page`. Each handler makes
//! its reads as control calls with the session's token and renders a
//! template; a refused read shows what the control plane said. Buttons are
//! shown by the session's scope, but pressing one is decided by `authz`.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use launch_proto::*;

use super::search::{self, Suggestion};
use super::session::{ApiSession, PageSession, Session};
use super::{Dash, Failure};

/// A template rendered as a response; a template error is a generic 500.
pub fn html(template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => Html(body).into_response(),
        Err(err) => {
            tracing::error!(cause = %err, "dashboard: cannot render a template");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// What every page's frame shows: who is logged in, and the CSRF token.
pub struct Chrome {
    pub csrf: String,
    pub name: String,
    pub scope: &'static str,
    pub title: String,
}

impl Chrome {
    pub(super) fn of(session: &Session, title: impl Into<String>) -> Self {
        Chrome {
            csrf: session.csrf.clone(),
            name: session.name.clone(),
            scope: session.scope.label(),
            title: title.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/error.html")]
pub struct ErrorPage {
    pub code: u16,
    pub message: String,
}

/// One row of the services table.
pub struct ServiceRow {
    pub service: String,
    pub environment: String,
    pub status: &'static str,
    /// `status` as a CSS class (`rolled-back`).
    pub status_class: String,
    pub agents: u32,
    pub url: String,
    pub age: String,
    pub git_ref: String,
    pub previews: u32,
    pub tags: Vec<String>,
}

/// "healthy", "deploying", "failed", "rolled back", "cancelled", "degraded" or "no agent".
pub fn status_of(info: &ServiceInfo) -> &'static str {
    let state = info.last_mission_state();
    match state {
        MissionState::Queued | MissionState::Dispatched | MissionState::Running => "deploying",
        _ if info.agents_connected == 0 => "no agent",
        MissionState::Healthy if !info.health.is_empty() => "degraded",
        MissionState::Healthy => "healthy",
        MissionState::Failed => "failed",
        MissionState::RolledBack => "rolled back",
        MissionState::Cancelled => "cancelled",
        MissionState::Unspecified => "no release",
    }
}

/// A label as a CSS class: `rolled back` → `rolled-back`.
pub fn class_of(label: &str) -> String {
    label.replace([' ', '_'], "-")
}

/// `3m`, `2h`, `5d` since `unix_ms`; empty for 0.
pub fn age(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return String::new();
    }
    let secs = ((super::super::store::now_ms() - unix_ms) / 1000).max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// The first 12 characters of a git sha (other refs whole).
pub fn short_ref(git_ref: &str) -> String {
    if git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
        git_ref[..12].to_owned()
    } else {
        git_ref.to_owned()
    }
}

pub(super) fn row_of(info: &ServiceInfo) -> ServiceRow {
    let target = info.target.clone().unwrap_or_default();
    let tags = search::tags_of(info)
        .into_iter()
        .map(|(key, value)| format!("{key}:{value}"))
        .collect();
    ServiceRow {
        status: status_of(info),
        status_class: class_of(status_of(info)),
        agents: info.agents_connected,
        url: info.url.clone(),
        age: age(info.current_release_unix_ms),
        git_ref: short_ref(&info.current_release_git_ref),
        previews: info.previews,
        tags,
        service: target.service,
        environment: target.environment,
    }
}

/// Services shown per page (and per search answer).
pub const PAGE: u32 = 100;

#[derive(Template)]
#[template(path = "dashboard/services.html")]
struct ServicesPage {
    chrome: Chrome,
    query: String,
    listed: Listed,
}

#[derive(Template)]
#[template(path = "dashboard/service_rows.html")]
struct ServiceRows {
    listed: Listed,
}

#[derive(Template)]
#[template(path = "dashboard/service_row.html")]
struct ServiceRowFragment {
    row: ServiceRow,
}

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    /// The page of the services that match, from 1.
    #[serde(default)]
    page: Option<u32>,
}

/// One page of the services a search matched.
struct Listed {
    rows: Vec<ServiceRow>,
    /// How many services matched.
    matched: u32,
    /// The first row's place among them, from 1 (0 when there is none).
    first: u32,
    /// The links to the neighbouring pages (empty when there is none).
    previous: String,
    next: String,
    /// Rows per page.
    size: u32,
}

/// The page `page` of the services the session may list that match
/// `query`: the search and the page are applied by `ListServices`.
async fn listed(
    dash: &Dash,
    session: &Session,
    query: &SearchQuery,
    page: bool,
) -> Result<Listed, Failure> {
    let number = query.page.unwrap_or(1).max(1);
    let offset = (number - 1).saturating_mul(PAGE);
    let answer = session
        .outcome(
            dash,
            dash.control()
                .list_services(session.request(ListServicesRequest {
                    search: query.q.clone(),
                    limit: PAGE,
                    offset,
                    ..Default::default()
                }))
                .await,
            page,
        )
        .await?;
    let rows: Vec<ServiceRow> = answer.services.iter().map(row_of).collect();
    let link = |number: u32| match query.q.as_str() {
        "" => format!("/?page={number}"),
        q => format!("/?q={}&page={number}", query_escaped(q)),
    };
    Ok(Listed {
        first: if rows.is_empty() { 0 } else { offset + 1 },
        previous: if number > 1 {
            link(number - 1)
        } else {
            String::new()
        },
        next: if offset.saturating_add(PAGE) < answer.matched {
            link(number + 1)
        } else {
            String::new()
        },
        matched: answer.matched,
        rows,
        size: PAGE,
    })
}

/// `text` as a URL query value: unreserved bytes as they are, the rest as `%XX`.
fn query_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Listed {
    /// The last row's place among the matches.
    fn last(&self) -> u32 {
        self.first + (self.rows.len() as u32).saturating_sub(1)
    }
}

/// `GET /?q=&page=`: the services, a page at a time.
pub async fn services(
    Extract(dash): Extract<Arc<Dash>>,
    PageSession(session): PageSession,
    Query(query): Query<SearchQuery>,
) -> Result<Response, Failure> {
    let listed = listed(&dash, &session, &query, true).await?;
    Ok(html(&ServicesPage {
        chrome: Chrome::of(&session, "Services"),
        query: query.q,
        listed,
    }))
}

/// `GET /fragments/services?q=&page=`: the table's rows for a search.
pub async fn services_rows(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Query(query): Query<SearchQuery>,
) -> Result<Response, Failure> {
    let listed = listed(&dash, &session, &query, false).await?;
    Ok(html(&ServiceRows { listed }))
}

#[derive(Template)]
#[template(path = "dashboard/suggest.html")]
struct Suggestions {
    suggestions: Vec<Suggestion>,
}

/// `GET /fragments/suggest?q=`: completions of the search's last word.
pub async fn suggest(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Query(query): Query<SearchQuery>,
) -> Result<Response, Failure> {
    let suggestions = search::suggest(&dash, &session, &query.q).await?;
    Ok(html(&Suggestions { suggestions }))
}

pub(super) async fn service_info(
    dash: &Dash,
    session: &Session,
    target: &ServiceRef,
    page: bool,
) -> Result<ServiceInfo, Failure> {
    session
        .outcome(
            dash,
            dash.control()
                .get_service(session.request(GetServiceRequest {
                    target: Some(target.clone()),
                }))
                .await,
            page,
        )
        .await
}

/// `GET /fragments/service-row/{service}/{environment}`.
pub async fn service_row(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Path((service, environment)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let target = ServiceRef {
        service,
        environment,
    };
    let info = service_info(&dash, &session, &target, false).await?;
    Ok(html(&ServiceRowFragment { row: row_of(&info) }))
}

/// One agent as the pages show it.
pub struct Agent {
    pub agent_id: String,
    pub hostname: String,
    pub version: String,
    pub labels: String,
    pub connected: bool,
    pub last_seen: String,
    pub revoked: bool,
}

pub(super) fn agent_of(agent: AgentInfo) -> Agent {
    let mut labels: Vec<String> = agent
        .labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    labels.sort();
    Agent {
        agent_id: agent.agent_id,
        hostname: agent.hostname,
        version: agent.version,
        labels: labels.join(", "),
        connected: agent.connected,
        last_seen: age(agent.last_seen_unix_ms),
        revoked: agent.revoked,
    }
}

#[derive(Template)]
#[template(path = "dashboard/agents.html")]
struct AgentsPage {
    chrome: Chrome,
    agents: Vec<Agent>,
    served_version: String,
}

/// `GET /agents`.
pub async fn agents(
    Extract(dash): Extract<Arc<Dash>>,
    PageSession(session): PageSession,
) -> Result<Response, Failure> {
    let listed = session
        .outcome(
            &dash,
            dash.control()
                .list_agents(session.request(ListAgentsRequest {}))
                .await,
            true,
        )
        .await?;
    Ok(html(&AgentsPage {
        chrome: Chrome::of(&session, "Agents"),
        agents: listed.agents.into_iter().map(agent_of).collect(),
        served_version: listed.served_version,
    }))
}

#[derive(Template)]
#[template(path = "dashboard/mission.html")]
struct MissionPage {
    chrome: Chrome,
    mission: MissionInfo,
    service: String,
    environment: String,
    kind: &'static str,
    state: String,
    state_class: String,
}

/// `GET /missions/{mission_id}`: the mission and its live log.
pub async fn mission(
    Extract(dash): Extract<Arc<Dash>>,
    PageSession(session): PageSession,
    Path(mission_id): Path<String>,
) -> Result<Response, Failure> {
    let mission = session
        .outcome(
            &dash,
            dash.control()
                .get_mission(session.request(GetMissionRequest { mission_id }))
                .await,
            true,
        )
        .await?;
    let target = mission.target.clone().unwrap_or_default();
    Ok(html(&MissionPage {
        chrome: Chrome::of(&session, format!("Mission {}", mission.mission_id)),
        service: target.service,
        environment: target.environment,
        kind: mission.kind().label(),
        state: mission.state().label().replace('_', " "),
        state_class: class_of(mission.state().label()),
        mission,
    }))
}

/// A small HTML message for htmx to put in the page's flash area, or a
/// redirect back for a plain form post.
pub fn flash(htmx: bool, back: &str, message: String) -> Response {
    if htmx {
        let mut out = String::new();
        for c in message.chars() {
            super::ansi::escape_char(c, &mut out);
        }
        return Html(out).into_response();
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, back.to_owned())]).into_response()
}
