//! Pull-request previews on the control plane: what a preview deploy must
//! pass before anything is recorded (a DNS-label name, a deployed
//! environment to sit beside, the per-service cap), listing, teardown (by
//! the CLI, by the webhook's `pull_request closed`, by the idle sweep), and
//! the preview fields of the missions sent to agents. A preview lives on
//! the agent of its environment, as its own compose project; the agent does
//! the teardown, and its own sweep removes whatever preview the list sent
//! in `Welcome` no longer names.

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;
use tracing::{info, warn};

use launch_core::names::{EnvironmentName, PreviewName, ServiceName};
use launch_proto::{
    ListPreviewsRequest, ListPreviewsResponse, PreviewInfo, RemovePreviewRequest,
    RemovePreviewResponse, ServiceRef,
};

use super::state::{State, internal};
use super::store::now_ms;
use super::store::previews::PreviewRow;
use super::tokens;

/// How many previews a service may have, how long an idle one lives, and
/// what each of its containers may use.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Live previews per service and environment; the next deploy is refused.
    pub cap: usize,
    /// A preview not deployed for this long is torn down.
    pub ttl: Duration,
    /// How often the idle sweep looks.
    pub sweep_every: Duration,
    /// Memory limit of every container of a preview (0: none).
    pub memory_bytes: u64,
    /// CPU limit of every container of a preview, in thousandths of a CPU (0: none).
    pub millicpus: u32,
}

pub const DEFAULT_CAP: usize = 5;
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_MEMORY_BYTES: u64 = 512 * 1024 * 1024;
pub const DEFAULT_MILLICPUS: u32 = 1000;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cap: DEFAULT_CAP,
            ttl: DEFAULT_TTL,
            sweep_every: Duration::from_secs(60),
            memory_bytes: DEFAULT_MEMORY_BYTES,
            millicpus: DEFAULT_MILLICPUS,
        }
    }
}

/// Flags of `launch server` for previews.
#[derive(Clone, Debug, clap::Args)]
pub struct PreviewFlags {
    /// Live previews a service may have per environment
    #[arg(long, env = "LAUNCH_PREVIEW_CAP", default_value_t = DEFAULT_CAP)]
    pub preview_cap: usize,
    /// A preview not deployed for this long is torn down (e.g. 7d, 90s)
    #[arg(long, env = "LAUNCH_PREVIEW_TTL", default_value = "7d", value_parser = humantime::parse_duration)]
    pub preview_ttl: Duration,
    /// Memory limit of every container of a preview, in MiB (0: none)
    #[arg(long, env = "LAUNCH_PREVIEW_MEMORY_MIB", default_value_t = DEFAULT_MEMORY_BYTES / 1024 / 1024)]
    pub preview_memory_mib: u64,
    /// CPU limit of every container of a preview, in thousandths of a CPU (0: none)
    #[arg(long, env = "LAUNCH_PREVIEW_MILLICPUS", default_value_t = DEFAULT_MILLICPUS)]
    pub preview_millicpus: u32,
}

impl Default for PreviewFlags {
    fn default() -> Self {
        PreviewFlags {
            preview_cap: DEFAULT_CAP,
            preview_ttl: DEFAULT_TTL,
            preview_memory_mib: DEFAULT_MEMORY_BYTES / 1024 / 1024,
            preview_millicpus: DEFAULT_MILLICPUS,
        }
    }
}

impl PreviewFlags {
    pub fn settings(&self) -> Settings {
        Settings {
            cap: self.preview_cap,
            ttl: self.preview_ttl,
            // A short TTL (tests) is looked at as often as it needs.
            sweep_every: (self.preview_ttl / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            memory_bytes: self.preview_memory_mib * 1024 * 1024,
            millicpus: self.preview_millicpus,
        }
    }
}

/// Checks a preview deploy before its bundle is recorded: the name, an
/// environment already deployed (the preview runs on its agent), and the
/// cap (exit 2 naming the cap and the oldest preview).
pub async fn check_deploy(
    state: &State,
    service: &str,
    environment: &str,
    preview: &str,
) -> Result<(), Status> {
    PreviewName::parse(preview).map_err(|e| Status::invalid_argument(format!("--preview: {e}")))?;
    let deployed = state
        .store
        .service(service, environment)
        .await
        .map_err(internal)?
        .filter(|row| !row.retired && row.current_release_id.is_some());
    if deployed.is_none() {
        return Err(Status::failed_precondition(format!(
            "{service} in {environment} has no running release to preview beside: deploy it first with `launch deploy --env {environment}`"
        )));
    }
    let live = state
        .store
        .previews(service, environment)
        .await
        .map_err(internal)?;
    if live.iter().any(|p| p.preview == preview) {
        return Ok(()); // a redeploy replaces the preview's release
    }
    if live.len() >= state.previews.cap {
        let oldest = &live[0];
        return Err(Status::failed_precondition(format!(
            "{service} in {environment} already has {} live previews, the cap ({}): remove one first, e.g. the oldest with `launch previews rm {} --service {service} --env {environment}`",
            live.len(),
            state.previews.cap,
            oldest.preview
        )));
    }
    Ok(())
}

pub fn info(row: &PreviewRow) -> PreviewInfo {
    PreviewInfo {
        target: Some(ServiceRef {
            service: row.service.clone(),
            environment: row.environment.clone(),
        }),
        preview: row.preview.clone(),
        url: row.url.clone(),
        release_id: row.release_id.clone(),
        state: row.state as i32,
        git_ref: row.git_ref.clone(),
        repo: row.repo.clone(),
        pr: row.pr,
        created_unix_ms: row.created,
        last_deploy_unix_ms: row.last_deploy,
        age_ms: (now_ms() - row.created).max(0) as u64,
        idle_ms: (now_ms() - row.last_deploy).max(0) as u64,
    }
}

/// The target of a list or remove: empty service means every service.
fn optional_target(target: Option<&ServiceRef>) -> Result<(String, String), Status> {
    let target = target.cloned().unwrap_or_default();
    if target.service.is_empty() {
        return Ok((String::new(), String::new()));
    }
    ServiceName::parse(&target.service).map_err(|e| Status::invalid_argument(e.to_string()))?;
    EnvironmentName::parse(&target.environment)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok((target.service, target.environment))
}

pub async fn list(
    state: &State,
    request: &ListPreviewsRequest,
) -> Result<ListPreviewsResponse, Status> {
    let (service, environment) = optional_target(request.target.as_ref())?;
    let rows = state
        .store
        .previews(&service, &environment)
        .await
        .map_err(internal)?;
    Ok(ListPreviewsResponse {
        previews: rows.iter().map(info).collect(),
    })
}

pub async fn remove(
    state: &State,
    request: &RemovePreviewRequest,
) -> Result<RemovePreviewResponse, Status> {
    let (service, environment) = optional_target(request.target.as_ref())?;
    let preview = PreviewName::parse(&request.preview)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let targets: Vec<(String, String)> = if service.is_empty() {
        state
            .store
            .previews("", "")
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|row| row.preview == preview.as_str())
            .map(|row| (row.service, row.environment))
            .collect()
    } else {
        vec![(service, environment)]
    };
    let mut response = RemovePreviewResponse::default();
    for (service, environment) in targets {
        if let Some((row, mission_id)) =
            remove_one(state, &service, &environment, preview.as_str()).await?
        {
            response.removed.push(info(&row));
            response.mission_ids.push(mission_id);
        }
    }
    Ok(response)
}

/// Forgets one preview and dispatches its teardown; `None` when it was not live.
pub async fn remove_one(
    state: &State,
    service: &str,
    environment: &str,
    preview: &str,
) -> Result<Option<(PreviewRow, String)>, Status> {
    let mission_id = tokens::new_id("m");
    let Some(row) = state
        .store
        .remove_preview(service, environment, preview, &mission_id)
        .await
        .map_err(internal)?
    else {
        return Ok(None);
    };
    info!(%service, %environment, %preview, %mission_id, "preview teardown queued");
    let mission = state
        .store
        .mission(&mission_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal("mission vanished after insert"))?;
    state.dispatch(&mission).await?;
    Ok(Some((row, mission_id)))
}

/// `pull_request closed`: tears down `pr-<number>` of every service with a
/// release from `repo`.
pub async fn close_pull_request(state: &State, repo: &str, number: u64) -> Result<usize, Status> {
    let preview = PreviewName::for_pull_request(number);
    let services = state
        .store
        .services_from_repo(repo)
        .await
        .map_err(internal)?;
    let mut removed = 0;
    for (service, environment) in services {
        if remove_one(state, &service, &environment, preview.as_str())
            .await?
            .is_some()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Tears down previews idle for longer than the TTL, every `sweep_every`,
/// until shutdown.
pub async fn sweep_idle(state: Arc<State>) {
    let mut tick = tokio::time::interval(state.previews.sweep_every);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let before = now_ms() - state.previews.ttl.as_millis() as i64;
        let idle = match state.store.idle_previews(before).await {
            Ok(idle) => idle,
            Err(err) => {
                warn!(cause = %err, "cannot look for idle previews");
                continue;
            }
        };
        for row in idle {
            info!(service = %row.service, environment = %row.environment, preview = %row.preview, "preview idle past its TTL: tearing it down");
            if let Err(status) =
                remove_one(&state, &row.service, &row.environment, &row.preview).await
            {
                warn!(cause = %status.message(), preview = %row.preview, "cannot tear down an idle preview");
            }
        }
    }
}
