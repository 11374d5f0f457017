//! The handful of GitHub REST calls the reporter makes — issue comments,
//! commit statuses, deployments and deployment statuses, and a token check —
//! hand-written on hyper (octocrab would bring a second HTTP stack for five
//! endpoints). Every call is retried on transport errors, 5xx and rate limits
//! (`Retry-After`, or `x-ratelimit-remaining: 0` with `x-ratelimit-reset`),
//! with a bounded number of attempts and a cap on each wait; the token goes
//! in a sensitive header and never into an error or a log line.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tracing::{debug, warn};

/// Attempts per call, the first included.
const ATTEMPTS: u32 = 6;
/// The longest a single wait between attempts may be.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long one exchange may take.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub answered {status} to {what}: {message}")]
    Status {
        status: u16,
        what: String,
        message: String,
    },
    #[error("cannot reach GitHub for {what}: {cause}")]
    Transport { what: String, cause: String },
}

impl GithubError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Status { status, .. } => Some(*status),
            GithubError::Transport { .. } => None,
        }
    }
}

pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    token: String,
}

struct Reply {
    status: u16,
    headers: header::HeaderMap,
    body: Bytes,
}

impl Client {
    pub fn new(base: &str, token: String) -> anyhow::Result<Client> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| anyhow::anyhow!("load the system's root certificates for GitHub: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Client {
            http: HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https),
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// `GET /rate_limit`: answers 401 for a bad token and costs no quota.
    pub async fn check_token(&self) -> Result<(), GithubError> {
        self.call(
            Method::GET,
            "/rate_limit".to_owned(),
            None,
            "the token check",
        )
        .await
        .map(drop)
    }

    /// The id of the pull request's comment whose body contains `marker`.
    pub async fn find_comment(
        &self,
        repo: &str,
        pr: u64,
        marker: &str,
    ) -> Result<Option<u64>, GithubError> {
        for page in 1..=10 {
            let list = self
                .call(
                    Method::GET,
                    format!("/repos/{repo}/issues/{pr}/comments?per_page=100&page={page}"),
                    None,
                    "listing the pull request's comments",
                )
                .await?;
            let Some(comments) = list.as_array() else {
                return Ok(None);
            };
            if let Some(id) = comments
                .iter()
                .find(|c| c["body"].as_str().is_some_and(|b| b.contains(marker)))
                .and_then(|c| c["id"].as_u64())
            {
                return Ok(Some(id));
            }
            if comments.len() < 100 {
                break;
            }
        }
        Ok(None)
    }

    pub async fn create_comment(
        &self,
        repo: &str,
        pr: u64,
        body: &str,
    ) -> Result<u64, GithubError> {
        let made = self
            .call(
                Method::POST,
                format!("/repos/{repo}/issues/{pr}/comments"),
                Some(json!({ "body": body })),
                "creating the pull request comment",
            )
            .await?;
        id_of(&made, "creating the pull request comment")
    }

    pub async fn update_comment(&self, repo: &str, id: u64, body: &str) -> Result<(), GithubError> {
        self.call(
            Method::PATCH,
            format!("/repos/{repo}/issues/comments/{id}"),
            Some(json!({ "body": body })),
            "editing the pull request comment",
        )
        .await
        .map(drop)
    }

    /// `state`: pending, success, failure or error.
    pub async fn create_status(
        &self,
        repo: &str,
        sha: &str,
        state: &str,
        target_url: &str,
        description: &str,
        context: &str,
    ) -> Result<(), GithubError> {
        let mut body = json!({
            "state": state,
            "description": truncate(description, 140),
            "context": context,
        });
        if !target_url.is_empty() {
            body["target_url"] = json!(target_url);
        }
        self.call(
            Method::POST,
            format!("/repos/{repo}/statuses/{sha}"),
            Some(body),
            "posting the commit status",
        )
        .await
        .map(drop)
    }

    pub async fn create_deployment(
        &self,
        repo: &str,
        git_ref: &str,
        environment: &str,
        description: &str,
        transient: bool,
    ) -> Result<u64, GithubError> {
        let made = self
            .call(
                Method::POST,
                format!("/repos/{repo}/deployments"),
                Some(json!({
                    "ref": git_ref,
                    "environment": environment,
                    "description": truncate(description, 140),
                    "auto_merge": false,
                    "required_contexts": [],
                    "transient_environment": transient,
                    "production_environment": !transient && environment.starts_with("prod"),
                })),
                "creating the deployment",
            )
            .await?;
        id_of(&made, "creating the deployment")
    }

    /// `state`: queued, in_progress, success, failure, error or inactive.
    pub async fn create_deployment_status(
        &self,
        repo: &str,
        deployment_id: u64,
        state: &str,
        environment_url: &str,
        description: &str,
    ) -> Result<(), GithubError> {
        let mut body = json!({
            "state": state,
            "description": truncate(description, 140),
        });
        if !environment_url.is_empty() {
            body["environment_url"] = json!(environment_url);
        }
        self.call(
            Method::POST,
            format!("/repos/{repo}/deployments/{deployment_id}/statuses"),
            Some(body),
            "posting the deployment status",
        )
        .await
        .map(drop)
    }

    /// One call with retries; the JSON answer (Null for an empty body).
    async fn call(
        &self,
        method: Method,
        path: String,
        body: Option<Value>,
        what: &str,
    ) -> Result<Value, GithubError> {
        let url = format!("{}{path}", self.base);
        let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.exchange(&method, &url, payload.clone()).await;
            let wait = match &outcome {
                Ok(reply) if (200..300).contains(&reply.status) => {
                    return Ok(serde_json::from_slice(&reply.body).unwrap_or(Value::Null));
                }
                Ok(reply) => retry_wait(reply, attempt),
                Err(_) => Some(backoff(attempt)),
            };
            let error = match outcome {
                Ok(reply) => GithubError::Status {
                    status: reply.status,
                    what: what.to_owned(),
                    message: message_of(&reply.body),
                },
                Err(cause) => GithubError::Transport {
                    what: what.to_owned(),
                    cause,
                },
            };
            match wait {
                Some(wait) if attempt < ATTEMPTS => {
                    warn!(cause = %error, attempt, wait_ms = wait.as_millis() as u64, "GitHub call failed: retrying");
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(error),
            }
        }
    }

    async fn exchange(&self, method: &Method, url: &str, body: Bytes) -> Result<Reply, String> {
        let mut auth =
            header::HeaderValue::try_from(format!("Bearer {}", self.token)).map_err(|_| {
                "the GitHub token holds characters that cannot go in a header".to_owned()
            })?;
        auth.set_sensitive(true);
        let request = Request::builder()
            .method(method.clone())
            .uri(url)
            .header(header::AUTHORIZATION, auth)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("launch/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| format!("bad request URL {url}: {e}"))?;
        debug!(%method, %url, "GitHub call");
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| causes(&e))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok(Reply {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", TIMEOUT.as_secs())))
    }
}

/// How long to wait before retrying an answer, or `None` if retrying cannot help.
fn retry_wait(reply: &Reply, attempt: u32) -> Option<Duration> {
    let header_secs = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let rate_limited = reply.status == 429
        || (reply.status == 403
            && (reply.headers.contains_key(header::RETRY_AFTER)
                || header_secs("x-ratelimit-remaining") == Some(0)));
    if rate_limited {
        if let Some(secs) = header_secs(header::RETRY_AFTER.as_str()) {
            return Some(Duration::from_secs(secs).min(MAX_WAIT));
        }
        // `x-ratelimit-reset` is GitHub's clock in epoch seconds: only a hint
        // of how long to wait, capped, never a deadline we rely on.
        if let Some(reset) = header_secs("x-ratelimit-reset") {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            return Some(Duration::from_secs(reset.saturating_sub(now).max(1)).min(MAX_WAIT));
        }
        return Some(backoff(attempt));
    }
    (reply.status >= 500).then(|| backoff(attempt))
}

/// 0.5 s, 1 s, 2 s, 4 s, … capped.
fn backoff(attempt: u32) -> Duration {
    (Duration::from_millis(500) * 2u32.saturating_pow(attempt.saturating_sub(1))).min(MAX_WAIT)
}

fn id_of(value: &Value, what: &str) -> Result<u64, GithubError> {
    value["id"].as_u64().ok_or_else(|| GithubError::Status {
        status: 200,
        what: what.to_owned(),
        message: "the answer has no numeric `id`".to_owned(),
    })
}

/// GitHub's `message` field, or the first bytes of the body.
fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max_chars - 1).collect();
    out.push('…');
    out
}

fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&str, &str)]) -> Reply {
        let mut map = header::HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                header::HeaderValue::from_str(v).unwrap(),
            );
        }
        Reply {
            status,
            headers: map,
            body: Bytes::new(),
        }
    }

    #[test]
    fn rate_limits_and_server_errors_are_retried_and_client_errors_are_not() {
        assert_eq!(
            retry_wait(&reply(403, &[("retry-after", "3")]), 1),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_wait(&reply(429, &[("retry-after", "999")]), 1),
            Some(MAX_WAIT)
        );
        assert!(
            retry_wait(
                &reply(
                    403,
                    &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1")]
                ),
                1
            )
            .is_some()
        );
        assert_eq!(
            retry_wait(&reply(502, &[]), 2),
            Some(Duration::from_secs(1))
        );
        // A plain 403 (no permission) and a 404 cannot get better by waiting.
        assert_eq!(retry_wait(&reply(403, &[]), 1), None);
        assert_eq!(retry_wait(&reply(404, &[]), 1), None);
        assert_eq!(retry_wait(&reply(422, &[]), 1), None);
    }

    #[test]
    fn descriptions_are_cut_to_githubs_limit() {
        assert_eq!(truncate("short", 140), "short");
        let long = "x".repeat(200);
        assert_eq!(truncate(&long, 140).chars().count(), 140);
    }
}
