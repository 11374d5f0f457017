//! A fake of the few GitHub REST endpoints the control plane reports through,
//! the second hand-written fake (no emulator exists), written from GitHub's
//! REST documentation: issue comments (list with `per_page`/`page`, create,
//! edit), commit statuses, deployments and deployment statuses, and
//! `/rate_limit` as the token check. It checks the bearer token (401 "Bad
//! credentials"), requires a `User-Agent` (403, as GitHub does), validates the
//! states each endpoint accepts (422), and answers with GitHub's shapes.
//!
//! Tests read what was posted, delete a comment out of band, and inject a
//! 5xx storm or rate limits (403 with `Retry-After`, `x-ratelimit-remaining: 0`
//! and `x-ratelimit-reset`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::fake_http::{FakeServer, Request, Response};

#[derive(Clone, Debug, PartialEq)]
pub struct Comment {
    pub id: u64,
    pub repo: String,
    pub issue: u64,
    pub body: String,
    /// How many times it was edited after creation.
    pub edits: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CommitStatus {
    pub repo: String,
    pub sha: String,
    pub state: String,
    pub context: String,
    pub target_url: String,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Deployment {
    pub id: u64,
    pub repo: String,
    pub git_ref: String,
    pub environment: String,
    pub transient: bool,
    /// `(state, environment_url)` in the order posted.
    pub statuses: Vec<(String, String)>,
}

#[derive(Default)]
struct Shared {
    next_id: AtomicU32,
    comments: Mutex<BTreeMap<u64, Comment>>,
    statuses: Mutex<Vec<CommitStatus>>,
    deployments: Mutex<BTreeMap<u64, Deployment>>,
    requests: Mutex<Vec<String>>,
    fail_all_5xx: AtomicBool,
    rate_limit_next: AtomicU32,
    answered_5xx: AtomicU32,
    answered_rate_limited: AtomicU32,
}

pub struct GithubFake {
    pub token: String,
    shared: Arc<Shared>,
    server: FakeServer,
}

impl GithubFake {
    pub fn start(token: &str) -> GithubFake {
        let shared = Arc::new(Shared::default());
        let (sh, tok) = (shared.clone(), token.to_owned());
        let server = FakeServer::start(move |request| {
            sh.requests
                .lock()
                .unwrap()
                .push(format!("{} {}", request.method, request.target));
            answer(&request, &tok, &sh)
        });
        GithubFake {
            token: token.to_owned(),
            shared,
            server,
        }
    }

    /// The `--github-api-url` to give the control plane.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    pub fn comments(&self, repo: &str, issue: u64) -> Vec<Comment> {
        self.shared
            .comments
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.repo == repo && c.issue == issue)
            .cloned()
            .collect()
    }

    /// Deletes a comment as a person would in the GitHub UI.
    pub fn delete_comment(&self, id: u64) {
        assert!(self.shared.comments.lock().unwrap().remove(&id).is_some());
    }

    pub fn statuses(&self, repo: &str, sha: &str) -> Vec<CommitStatus> {
        self.shared
            .statuses
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.repo == repo && s.sha == sha)
            .cloned()
            .collect()
    }

    pub fn deployments(&self, repo: &str) -> Vec<Deployment> {
        self.shared
            .deployments
            .lock()
            .unwrap()
            .values()
            .filter(|d| d.repo == repo)
            .cloned()
            .collect()
    }

    /// `METHOD target` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Answers every request with 503 until turned off.
    pub fn fail_all(&self, on: bool) {
        self.shared.fail_all_5xx.store(on, Ordering::SeqCst);
    }

    /// Answers the next `n` requests as GitHub's secondary rate limit does.
    pub fn rate_limit_next(&self, n: u32) {
        self.shared.rate_limit_next.store(n, Ordering::SeqCst);
    }

    pub fn answered_5xx(&self) -> u32 {
        self.shared.answered_5xx.load(Ordering::SeqCst)
    }

    pub fn answered_rate_limited(&self) -> u32 {
        self.shared.answered_rate_limited.load(Ordering::SeqCst)
    }
}

fn message(status: u16, text: &str) -> Response {
    Response::json(
        status,
        &json!({"message": text, "documentation_url": "https://docs.github.com/rest"}),
    )
}

fn comment_json(comment: &Comment) -> Value {
    json!({
        "id": comment.id,
        "body": comment.body,
        "html_url": format!("https://github.com/{}/pull/{}#issuecomment-{}", comment.repo, comment.issue, comment.id),
        "user": {"login": "launch-bot", "type": "Bot"},
    })
}

fn answer(request: &Request, token: &str, shared: &Shared) -> Response {
    let take = |counter: &AtomicU32| {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    if shared.fail_all_5xx.load(Ordering::SeqCst) {
        shared.answered_5xx.fetch_add(1, Ordering::SeqCst);
        return message(503, "Service Unavailable");
    }
    if take(&shared.rate_limit_next) {
        shared.answered_rate_limited.fetch_add(1, Ordering::SeqCst);
        let reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1;
        return message(403, "You have exceeded a secondary rate limit.")
            .with_header("Retry-After", "1")
            .with_header("x-ratelimit-remaining", "0")
            .with_header("x-ratelimit-reset", reset.to_string());
    }
    let bearer = request.header("authorization").and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("token "))
    });
    if bearer != Some(token) {
        return message(401, "Bad credentials");
    }
    if request.header("user-agent").is_none_or(str::is_empty) {
        return message(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
        );
    }
    let body: Value = if request.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&request.body) {
            Ok(v) => v,
            Err(_) => return message(400, "Problems parsing JSON"),
        }
    };
    let segments: Vec<&str> = request.path().trim_start_matches('/').split('/').collect();
    let new_id = || u64::from(shared.next_id.fetch_add(1, Ordering::SeqCst)) + 1000;
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["rate_limit"]) => Response::json(
            200,
            &json!({"rate": {"limit": 5000, "remaining": 4999, "reset": 0, "used": 1}}),
        ),
        ("GET", ["repos", owner, name, "issues", issue, "comments"]) => {
            let repo = format!("{owner}/{name}");
            let issue: u64 = issue.parse().unwrap_or(0);
            let query = request.query();
            let per_page: usize = query
                .get("per_page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30)
                .min(100);
            let page: usize = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
            let comments = shared.comments.lock().unwrap();
            let list: Vec<Value> = comments
                .values()
                .filter(|c| c.repo == repo && c.issue == issue)
                .skip(per_page * page.saturating_sub(1))
                .take(per_page)
                .map(comment_json)
                .collect();
            Response::json(200, &Value::Array(list))
        }
        ("POST", ["repos", owner, name, "issues", issue, "comments"]) => {
            let Some(text) = body["body"].as_str() else {
                return message(422, "Invalid request. \"body\" wasn't supplied.");
            };
            let comment = Comment {
                id: new_id(),
                repo: format!("{owner}/{name}"),
                issue: issue.parse().unwrap_or(0),
                body: text.to_owned(),
                edits: 0,
            };
            let reply = comment_json(&comment);
            shared.comments.lock().unwrap().insert(comment.id, comment);
            Response::json(201, &reply)
        }
        ("PATCH", ["repos", _, _, "issues", "comments", id]) => {
            let Some(text) = body["body"].as_str() else {
                return message(422, "Invalid request. \"body\" wasn't supplied.");
            };
            let mut comments = shared.comments.lock().unwrap();
            let Some(comment) = id.parse().ok().and_then(|id: u64| comments.get_mut(&id)) else {
                return message(404, "Not Found");
            };
            comment.body = text.to_owned();
            comment.edits += 1;
            Response::json(200, &comment_json(comment))
        }
        ("POST", ["repos", owner, name, "statuses", sha]) => {
            let state = body["state"].as_str().unwrap_or_default();
            if !["error", "failure", "pending", "success"].contains(&state) {
                return message(422, "Validation Failed: state");
            }
            let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
            let status = CommitStatus {
                repo: format!("{owner}/{name}"),
                sha: (*sha).to_owned(),
                state: state.to_owned(),
                context: if body["context"].is_string() {
                    text("context")
                } else {
                    "default".to_owned()
                },
                target_url: text("target_url"),
                description: text("description"),
            };
            let reply = json!({"id": new_id(), "state": status.state, "context": status.context});
            shared.statuses.lock().unwrap().push(status);
            Response::json(201, &reply)
        }
        ("POST", ["repos", owner, name, "deployments"]) => {
            let (Some(git_ref), environment) = (body["ref"].as_str(), body["environment"].as_str())
            else {
                return message(422, "Validation Failed: ref");
            };
            let deployment = Deployment {
                id: new_id(),
                repo: format!("{owner}/{name}"),
                git_ref: git_ref.to_owned(),
                environment: environment.unwrap_or("production").to_owned(),
                transient: body["transient_environment"].as_bool().unwrap_or(false),
                statuses: Vec::new(),
            };
            let reply = json!({"id": deployment.id, "ref": deployment.git_ref, "environment": deployment.environment});
            shared
                .deployments
                .lock()
                .unwrap()
                .insert(deployment.id, deployment);
            Response::json(201, &reply)
        }
        ("POST", ["repos", _, _, "deployments", id, "statuses"]) => {
            let state = body["state"].as_str().unwrap_or_default();
            if ![
                "error",
                "failure",
                "inactive",
                "in_progress",
                "queued",
                "pending",
                "success",
            ]
            .contains(&state)
            {
                return message(422, "Validation Failed: state");
            }
            let mut deployments = shared.deployments.lock().unwrap();
            let Some(deployment) = id.parse().ok().and_then(|id: u64| deployments.get_mut(&id))
            else {
                return message(404, "Not Found");
            };
            let url = body["environment_url"].as_str().unwrap_or_default();
            deployment.statuses.push((state.to_owned(), url.to_owned()));
            Response::json(201, &json!({"id": new_id(), "state": state}))
        }
        _ => message(404, "Not Found"),
    }
}
