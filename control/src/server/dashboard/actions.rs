//! The dashboard's state-changing POSTs: Activate (roll back or forward to
//! a release), Redeploy (the current release again), remove a preview, set
//! and remove a secret. Each checks the CSRF token, then makes one control
//! call with the session's token; whether the token may do it is decided by
//! `authz` alone. An htmx request gets a one-line message for the page's
//! flash area; a plain form post is sent back to the service's page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State as Extract};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use launch_proto::*;

use super::pages::flash;
use super::session::ApiSession;
use super::{Dash, Failure, csrf};

type Fields = Form<HashMap<String, String>>;

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map(String::as_str).unwrap_or_default()
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

fn back(service: &str, environment: &str) -> String {
    format!("/services/{service}/{environment}")
}

fn target(service: String, environment: String) -> Option<ServiceRef> {
    Some(ServiceRef {
        service,
        environment,
    })
}

/// `POST /services/{service}/{environment}/activate` with `release_id`.
pub async fn activate(
    dash: Extract<Arc<Dash>>,
    session: ApiSession,
    path: Path<(String, String)>,
    headers: HeaderMap,
    form: Fields,
) -> Result<Response, Response> {
    queue_release(dash, session, path, headers, form, "activating").await
}

/// `POST /services/{service}/{environment}/redeploy`: the current release again.
pub async fn redeploy(
    dash: Extract<Arc<Dash>>,
    session: ApiSession,
    path: Path<(String, String)>,
    headers: HeaderMap,
    form: Fields,
) -> Result<Response, Response> {
    queue_release(dash, session, path, headers, form, "redeploying").await
}

/// Activate and Redeploy are one control call: a mission that makes the
/// form's `release_id` current (an earlier one, or the current one again).
async fn queue_release(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Path((service, environment)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Fields,
    verb: &str,
) -> Result<Response, Response> {
    csrf::check(&session, &headers, field(&form, "csrf")).map_err(IntoResponse::into_response)?;
    let back = back(&service, &environment);
    let release_id = field(&form, "release_id").to_owned();
    let queued = session
        .outcome(
            &dash,
            dash.control()
                .rollback(session.request(RollbackRequest {
                    target: target(service, environment),
                    to_release_id: release_id,
                }))
                .await,
            false,
        )
        .await
        .map_err(refused)?;
    Ok(flash(
        is_htmx(&headers),
        &back,
        format!(
            "{verb} release {}: mission {}",
            queued.release_id, queued.mission_id
        ),
    ))
}

/// `POST /services/{service}/{environment}/previews/{preview}/remove`.
pub async fn remove_preview(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Path((service, environment, preview)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Fields,
) -> Result<Response, Response> {
    csrf::check(&session, &headers, field(&form, "csrf")).map_err(IntoResponse::into_response)?;
    let back = back(&service, &environment);
    session
        .outcome(
            &dash,
            dash.control()
                .remove_preview(session.request(RemovePreviewRequest {
                    target: target(service, environment),
                    preview: preview.clone(),
                }))
                .await,
            false,
        )
        .await
        .map_err(refused)?;
    Ok(flash(
        is_htmx(&headers),
        &back,
        format!("removing preview {preview}"),
    ))
}

/// `POST /services/{service}/{environment}/secrets` with `key` and `value`.
/// The value is never echoed back, not even its length.
pub async fn set_secret(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Path((service, environment)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Fields,
) -> Result<Response, Response> {
    csrf::check(&session, &headers, field(&form, "csrf")).map_err(IntoResponse::into_response)?;
    let back = back(&service, &environment);
    let key = field(&form, "key").to_owned();
    session
        .outcome(
            &dash,
            dash.control()
                .set_secret(session.request(SetSecretRequest {
                    target: target(service, environment),
                    key: key.clone(),
                    value: field(&form, "value").to_owned(),
                }))
                .await,
            false,
        )
        .await
        .map_err(refused)?;
    Ok(flash(
        is_htmx(&headers),
        &back,
        format!("secret {key} set: it reaches the service at its next deploy"),
    ))
}

/// `POST /services/{service}/{environment}/secrets/{key}/remove`.
pub async fn remove_secret(
    Extract(dash): Extract<Arc<Dash>>,
    ApiSession(session): ApiSession,
    Path((service, environment, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Fields,
) -> Result<Response, Response> {
    csrf::check(&session, &headers, field(&form, "csrf")).map_err(IntoResponse::into_response)?;
    let back = back(&service, &environment);
    session
        .outcome(
            &dash,
            dash.control()
                .delete_secret(session.request(DeleteSecretRequest {
                    target: target(service, environment),
                    key: key.clone(),
                }))
                .await,
            false,
        )
        .await
        .map_err(refused)?;
    Ok(flash(
        is_htmx(&headers),
        &back,
        format!("secret {key} removed"),
    ))
}

fn refused(failure: Failure) -> Response {
    failure.into_response()
}
