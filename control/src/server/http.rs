//! The plain HTTP endpoints served on the gRPC port: `/healthz` for load
//! balancers, `/metrics` in Prometheus text format, and the agent binary (and
//! its sha256) that cloud-init downloads at host boot.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::state::State;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/agent/download/linux-amd64", get(agent_binary))
        .route("/v1/agent/download/linux-amd64.sha256", get(agent_sha256))
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
        "not found: this server answers /healthz, /metrics and /v1/agent/download/linux-amd64\n",
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn no_agent_binary() -> Response {
    (
        StatusCode::NOT_FOUND,
        "no agent binary on this server: build it with `cargo build -p launch-agent` and start the server with --agent-binary PATH\n",
    )
        .into_response()
}

async fn read_agent_binary(state: &State) -> Option<Vec<u8>> {
    let path = state.agent_binary.as_ref()?;
    match tokio::fs::read(path).await {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            tracing::warn!(path = %path.display(), cause = %err, "cannot read the agent binary");
            None
        }
    }
}

async fn agent_binary(Extract(state): Extract<Arc<State>>) -> Response {
    match read_agent_binary(&state).await {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"launch-agent\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        None => no_agent_binary(),
    }
}

async fn agent_sha256(Extract(state): Extract<Arc<State>>) -> Response {
    match read_agent_binary(&state).await {
        Some(bytes) => {
            format!("{}  launch-agent\n", hex::encode(Sha256::digest(&bytes))).into_response()
        }
        None => no_agent_binary(),
    }
}
