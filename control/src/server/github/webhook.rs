//! `POST /v1/github/webhook`: GitHub's deliveries, checked before anything
//! is read from them. The HMAC-SHA256 in `X-Hub-Signature-256` is computed
//! over the raw body bytes and compared in constant time; a body over GitHub's
//! own 25 MB cap is refused unread; a delivery id is handled once (the record
//! and the change it makes are one transaction). `ping` is answered,
//! `pull_request` `closed` marks the pull request closed, tears down its
//! previews (`pr-<N>` of every service with a release from that repository)
//! and has the reporter say so on it, every other event is acknowledged and ignored.
//!
//! Answers: 401 bad signature, 400 missing headers or a body that is not the
//! JSON the event needs, 413 oversize, 404 when webhooks are off — and in all
//! of those, nothing in the store changed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::{info, warn};

use super::{ReportEvent, Reporter};
use crate::server::store::Store;

/// GitHub caps payloads at 25 MB; anything larger is not from GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// What the webhook route needs.
pub struct Webhook {
    pub store: Store,
    /// `None`: webhooks are off.
    pub secret: Option<Vec<u8>>,
    pub reporter: Reporter,
    /// For tearing down a closed pull request's previews.
    pub state: Arc<crate::server::state::State>,
}

pub fn router(webhook: Arc<Webhook>) -> axum::Router {
    axum::Router::new()
        .route("/v1/github/webhook", axum::routing::post(receive))
        .with_state(webhook)
}

fn answer(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    text.push('\n');
    (status, text).into_response()
}

async fn receive(
    Extract(webhook): Extract<Arc<Webhook>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(secret) = &webhook.secret else {
        return answer(
            StatusCode::NOT_FOUND,
            "GitHub webhooks are off: start the server with --github-webhook-secret-file",
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(signature) = header("x-hub-signature-256") else {
        return answer(
            StatusCode::BAD_REQUEST,
            "missing X-Hub-Signature-256: set a secret on the GitHub webhook",
        );
    };
    let (Some(event), Some(delivery)) = (header("x-github-event"), header("x-github-delivery"))
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Event or X-GitHub-Delivery: only GitHub's deliveries are accepted",
        );
    };
    let (event, delivery) = (event.to_owned(), delivery.to_owned());
    let declared = header("content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over {MAX_BODY_BYTES} bytes: not a GitHub delivery"),
        );
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over {MAX_BODY_BYTES} bytes: not a GitHub delivery"),
            );
        }
    };
    if !signature_valid(secret, &body, signature) {
        warn!(%delivery, %event, "webhook delivery with a bad signature: refused");
        return answer(
            StatusCode::UNAUTHORIZED,
            "bad X-Hub-Signature-256: the webhook's secret and --github-webhook-secret-file differ",
        );
    }
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "the body is not JSON: set the webhook's content type to application/json",
        );
    };
    match event.as_str() {
        "ping" => answer(StatusCode::OK, "pong"),
        "pull_request" => pull_request(&webhook, &delivery, &payload).await,
        other => answer(StatusCode::ACCEPTED, format!("event {other} ignored")),
    }
}

async fn pull_request(webhook: &Webhook, delivery: &str, payload: &serde_json::Value) -> Response {
    let action = payload["action"].as_str();
    let repo = payload["repository"]["full_name"].as_str();
    let number = payload["number"]
        .as_u64()
        .or_else(|| payload["pull_request"]["number"].as_u64());
    let (Some(action), Some(repo), Some(number)) = (action, repo, number) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "a pull_request delivery needs action, number and repository.full_name",
        );
    };
    if action != "closed" {
        return answer(
            StatusCode::ACCEPTED,
            format!("pull_request {action} ignored"),
        );
    }
    match webhook
        .store
        .close_pull_request(delivery, repo, number)
        .await
    {
        Ok(true) => {
            info!(%delivery, %repo, pr = number, "pull request closed");
            match crate::server::previews::close_pull_request(&webhook.state, repo, number).await {
                Ok(removed) => {
                    info!(%repo, pr = number, removed, "the pull request's previews are being torn down")
                }
                Err(status) => {
                    warn!(cause = %status.message(), %repo, pr = number, "cannot tear down the pull request's previews")
                }
            }
            webhook.reporter.send(ReportEvent::PullRequestClosed {
                repo: repo.to_owned(),
                pr: number,
            });
            answer(StatusCode::OK, format!("{repo}#{number} closed"))
        }
        Ok(false) => answer(
            StatusCode::OK,
            format!("delivery {delivery} was handled before"),
        ),
        Err(err) => {
            warn!(cause = %err, %delivery, "cannot record a webhook delivery");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error in the control plane: see its log (GitHub will redeliver)",
            )
        }
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body), checked in constant time.
pub fn signature_valid(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_digest) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from GitHub's "Validating webhook deliveries" page.
    #[test]
    fn signature_matches_githubs_published_example() {
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            header
        ));
        assert!(!signature_valid(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            header
        ));
        assert!(!signature_valid(
            b"another secret",
            b"Hello, World!",
            header
        ));
        assert!(!signature_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            &header[7..]
        ));
        assert!(!signature_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            "sha256=zz"
        ));
    }
}
