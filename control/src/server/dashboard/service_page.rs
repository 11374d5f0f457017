//! One service's page and the fragments that keep it live: the head
//! (status, URL, current release, tags, certificate states), the release
//! timeline (who, when, git ref, duration, outcome) with Activate and
//! Redeploy, previews with Remove, secret names with set and remove (never
//! a value, not even its length), and the service's agents. The head and
//! the timeline carry `data-watch`, so a fleet event re-fetches them.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State as Extract};
use axum::response::Response;

use launch_proto::*;

use super::pages::{
    Agent, Chrome, ServiceRow, age, agent_of, class_of, html, row_of, service_info, short_ref,
};
use super::session::{ApiSession, PageSession, Session};
use super::{Dash, Failure};

/// The head of a service's page: status, URL, release, certificates.
pub struct Head {
    pub row: ServiceRow,
    pub health: String,
    pub fqdn: String,
    pub certificates: Vec<(String, String, String)>,
}

fn head_of(info: &ServiceInfo) -> Head {
    let certificates = info
        .routes
        .iter()
        .flat_map(|route| route.certificates.iter())
        .map(|cert| {
            let state = match cert.state() {
                CertificateState::Pending => "pending",
                CertificateState::Issued => "issued",
                CertificateState::Renewing => "renewing",
                CertificateState::Failed => "failed",
                _ => "unknown",
            };
            let expires = if cert.expires_unix_ms > 0 {
                format!(
                    "expires in {}",
                    age(2 * super::super::store::now_ms() - cert.expires_unix_ms)
                )
            } else {
                cert.error.clone()
            };
            (cert.host.clone(), state.to_owned(), expires)
        })
        .collect();
    Head {
        row: row_of(info),
        health: info.health.clone(),
        fqdn: info.fqdn.clone(),
        certificates,
    }
}

#[derive(Template)]
#[template(path = "dashboard/service_head.html")]
struct HeadFragment {
    head: Head,
}

/// `GET /fragments/service-head/{service}/{environment}`.
pub async fn service_head(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Path((service, environment)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let target = ServiceRef {
        service,
        environment,
    };
    let info = service_info(&dash, &session, &target, false).await?;
    Ok(html(&HeadFragment {
        head: head_of(&info),
    }))
}

/// One release in the timeline.
pub struct Release {
    pub release_id: String,
    pub state: String,
    pub state_class: String,
    pub current: bool,
    pub git_ref: String,
    pub when: String,
    pub who: String,
    pub duration: String,
    pub mission_id: String,
}

/// The newest releases shown, with their missions' timings.
const TIMELINE: usize = 20;

/// The timeline of `target`: newest first.
pub struct Timeline {
    pub service: String,
    pub environment: String,
    pub csrf: String,
    pub can_deploy: bool,
    pub releases: Vec<Release>,
}

async fn timeline(
    dash: &Dash,
    session: &Session,
    target: &ServiceRef,
    page: bool,
) -> Result<Timeline, Failure> {
    let mut releases = session
        .outcome(
            dash,
            dash.control()
                .list_releases(session.request(ListReleasesRequest {
                    target: Some(target.clone()),
                    include_retired: false,
                }))
                .await,
            page,
        )
        .await?
        .releases;
    releases.sort_by(|a, b| b.release_id.cmp(&a.release_id));
    releases.truncate(TIMELINE);
    let mut shown = Vec::with_capacity(releases.len());
    for release in releases {
        let mission = dash
            .control()
            .get_mission(session.request(GetMissionRequest {
                mission_id: release.mission_id.clone(),
            }))
            .await
            .ok()
            .map(tonic::Response::into_inner);
        let duration = mission
            .as_ref()
            .filter(|m| m.state().is_final())
            .map(|m| {
                format!(
                    "{}s",
                    ((m.updated_unix_ms - m.created_unix_ms) / 1000).max(0)
                )
            })
            .unwrap_or_default();
        let who = if release.pr > 0 {
            format!("{}#{}", release.repo, release.pr)
        } else {
            release.repo.clone()
        };
        shown.push(Release {
            state: release.state().label().replace('_', " "),
            state_class: class_of(release.state().label()),
            current: release.current,
            git_ref: short_ref(&release.git_ref),
            when: age(release.created_unix_ms),
            who,
            duration,
            mission_id: release.mission_id,
            release_id: release.release_id,
        });
    }
    Ok(Timeline {
        service: target.service.clone(),
        environment: target.environment.clone(),
        csrf: session.csrf.clone(),
        can_deploy: session.can_deploy(),
        releases: shown,
    })
}

#[derive(Template)]
#[template(path = "dashboard/releases.html")]
struct ReleasesFragment {
    timeline: Timeline,
}

/// `GET /fragments/releases/{service}/{environment}`.
pub async fn releases(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Path((service, environment)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let target = ServiceRef {
        service,
        environment,
    };
    let timeline = timeline(&dash, &session, &target, false).await?;
    Ok(html(&ReleasesFragment { timeline }))
}

#[derive(Template)]
#[template(path = "dashboard/service.html")]
struct ServicePage {
    chrome: Chrome,
    head: Head,
    timeline: Timeline,
    previews: Vec<PreviewInfo>,
    /// `None`: the session may not list secret names (admin only).
    secrets: Option<Vec<String>>,
    agents: Vec<Agent>,
    can_deploy: bool,
}

/// `GET /services/{service}/{environment}`.
pub async fn service(
    Extract(dash): Extract<Arc<Dash>>,
    PageSession(session): PageSession,
    Path((service, environment)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let target = ServiceRef {
        service,
        environment,
    };
    let info = service_info(&dash, &session, &target, true).await?;
    let timeline = timeline(&dash, &session, &target, true).await?;
    let previews = session
        .outcome(
            &dash,
            dash.control()
                .list_previews(session.request(ListPreviewsRequest {
                    target: Some(target.clone()),
                }))
                .await,
            true,
        )
        .await?
        .previews;
    let secrets = if session.is_admin() {
        let listed = session
            .outcome(
                &dash,
                dash.control()
                    .list_secrets(session.request(ListSecretsRequest {
                        target: Some(target.clone()),
                    }))
                    .await,
                true,
            )
            .await?;
        Some(listed.secrets.into_iter().map(|s| s.key).collect())
    } else {
        None
    };
    // Fleet-wide: a token for one service sees no agents here.
    let agents = dash
        .control()
        .list_agents(session.request(ListAgentsRequest {}))
        .await
        .map(|r| r.into_inner().agents)
        .unwrap_or_default()
        .into_iter()
        .filter(|agent| {
            agent.labels.get("service-name") == Some(&target.service)
                && agent.labels.get("environment") == Some(&target.environment)
        })
        .map(agent_of)
        .collect();
    Ok(html(&ServicePage {
        chrome: Chrome::of(
            &session,
            format!("{}/{}", target.service, target.environment),
        ),
        head: head_of(&info),
        timeline,
        previews,
        secrets,
        agents,
        can_deploy: session.can_deploy(),
    }))
}
