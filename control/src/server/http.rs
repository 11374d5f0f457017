//! The plain HTTP endpoints served on the gRPC port: `/healthz` for load
//! balancers, `/metrics` in Prometheus text format (with the front doors'
//! proxy counters per service), the agent binary (and
//! its sha256) that cloud-init downloads at host boot, and the `launch` CLI
//! (and its sha256) that CI jobs download.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::state::State;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route(
            "/v1/agent/download/linux-amd64",
            get(|Extract(s): Extract<Arc<State>>| Download::Agent.binary(s)),
        )
        .route(
            "/v1/agent/download/linux-amd64.sha256",
            get(|Extract(s): Extract<Arc<State>>| Download::Agent.sha256(s)),
        )
        .route(
            "/v1/cli/download/linux-amd64",
            get(|Extract(s): Extract<Arc<State>>| Download::Cli.binary(s)),
        )
        .route(
            "/v1/cli/download/linux-amd64.sha256",
            get(|Extract(s): Extract<Arc<State>>| Download::Cli.sha256(s)),
        )
        .with_state(state)
}

/// Unknown paths: gRPC callers get `Unimplemented`, people get a 404 that
/// lists what exists.
pub async fn fallback(request: axum::extract::Request) -> Response {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        return tonic::Status::unimplemented(format!(
            "{} is not a launch.v1 method: upgrade the client or the server",
            request.uri().path()
        ))
        .into_http();
    }
    (
        StatusCode::NOT_FOUND,
        "not found: this server answers / (the dashboard), /healthz, /metrics, /v1/agent/download/linux-amd64 and /v1/cli/download/linux-amd64\n",
    )
        .into_response()
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> Response {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP launch_agents_connected Agents with an open session."
    );
    let _ = writeln!(out, "# TYPE launch_agents_connected gauge");
    let _ = writeln!(
        out,
        "launch_agents_connected {}",
        state.hub.connected_count()
    );
    let _ = writeln!(
        out,
        "# HELP launch_missions_total Missions by kind and state."
    );
    let _ = writeln!(out, "# TYPE launch_missions_total gauge");
    match state.store.mission_counts().await {
        Ok(counts) => {
            for (kind, mission_state, count) in counts {
                let _ = writeln!(
                    out,
                    "launch_missions_total{{kind=\"{kind}\",state=\"{mission_state}\"}} {count}"
                );
            }
        }
        Err(err) => {
            tracing::error!(cause = %err, "metrics: cannot count missions");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    }
    let _ = writeln!(
        out,
        "# HELP launch_log_lines_total Log lines stored since start."
    );
    let _ = writeln!(out, "# TYPE launch_log_lines_total counter");
    let _ = writeln!(
        out,
        "launch_log_lines_total {}",
        state.hub.log_lines_total.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP launch_deploys_total Deploys accepted since start."
    );
    let _ = writeln!(out, "# TYPE launch_deploys_total counter");
    let _ = writeln!(
        out,
        "launch_deploys_total {}",
        state.hub.deploys_total.load(Ordering::Relaxed)
    );
    if let Some(groups) = state.store.deploy_groups() {
        let _ = writeln!(
            out,
            "# HELP launch_deploy_groups_total Transactions that recorded several concurrent deploys at once (SQLite) since start."
        );
        let _ = writeln!(out, "# TYPE launch_deploy_groups_total counter");
        let _ = writeln!(out, "launch_deploy_groups_total {groups}");
    }
    match state.store.proxy_counters().await {
        Ok(totals) => super::front_door::render(&totals, &mut out),
        Err(err) => {
            tracing::error!(cause = %err, "metrics: cannot read the proxy counters");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// A binary this server hands out: the agent (cloud-init fetches it at
/// boot) or the CLI (CI jobs fetch it), each with its sha256 in
/// `sha256sum` format so `sha256sum -c` checks it.
#[derive(Clone, Copy)]
enum Download {
    Agent,
    Cli,
}

impl Download {
    fn file_name(self) -> &'static str {
        match self {
            Download::Agent => "launch-agent",
            Download::Cli => "launch",
        }
    }

    fn path(self, state: &State) -> Option<&std::path::Path> {
        match self {
            Download::Agent => state.agent_binary.as_deref(),
            Download::Cli => state.cli_binary.as_deref(),
        }
    }

    fn missing(self) -> Response {
        let how = match self {
            Download::Agent => {
                "build it with `cargo build -p launch-agent` and start the server with --agent-binary PATH"
            }
            Download::Cli => "start the server with --cli-binary PATH",
        };
        (
            StatusCode::NOT_FOUND,
            format!("no {} binary on this server: {how}\n", self.file_name()),
        )
            .into_response()
    }

    async fn read(self, state: &State) -> Option<Vec<u8>> {
        let path = self.path(state)?;
        match tokio::fs::read(path).await {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                tracing::warn!(path = %path.display(), cause = %err, "cannot read a served binary");
                None
            }
        }
    }

    async fn binary(self, state: Arc<State>) -> Response {
        let Some(bytes) = self.read(&state).await else {
            return self.missing();
        };
        let disposition = format!("attachment; filename=\"{}\"", self.file_name());
        (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            bytes,
        )
            .into_response()
    }

    async fn sha256(self, state: Arc<State>) -> Response {
        let Some(path) = self.path(&state) else {
            return self.missing();
        };
        match super::digest::file_sha256(path).await {
            Ok(hex) => format!("{hex}  {}\n", self.file_name()).into_response(),
            Err(err) => {
                tracing::warn!(path = %path.display(), cause = %err, "cannot read a served binary");
                self.missing()
            }
        }
    }
}
