//! Agent versions: the binary this control plane serves (`--agent-binary`,
//! its sha256 and the version it prints for `--version`), which agents it
//! accepts (the same minor version as the control plane, or one minor
//! behind; any other is refused at Session open with a message saying so),
//! and `launch agents upgrade`: an upgrade mission for each connected agent
//! whose executable differs from the served one (by sha256, as each agent
//! says in its Hello), at most `--canary N` of them per call. The agent
//! fetches the binary with FetchAgentBinary, naming the sha256 its mission
//! carries.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;
use tracing::{info, warn};

use launch_proto::*;

use super::authz::matches;
use super::state::{State, internal};
use super::tokens;

/// The control plane's own version, which agents are held against.
pub const CONTROL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The agent binary served now.
#[derive(Clone, Debug)]
pub struct Served {
    pub path: PathBuf,
    pub sha256: String,
    /// What the binary prints for `--version` ("" when it says nothing usable).
    pub version: String,
}

/// (path, modified, size) → what was read, so the binary is hashed and asked
/// its version once per change of the file.
type Cache = Mutex<HashMap<(PathBuf, SystemTime, u64), Served>>;
static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();

/// The served agent binary, or why there is none.
pub async fn served(state: &State) -> Result<Served, Status> {
    let path = state.agent_binary.clone().ok_or_else(|| {
        Status::failed_precondition(
            "this control plane serves no launch-agent binary: start it with --agent-binary PATH",
        )
    })?;
    let meta = tokio::fs::metadata(&path).await.map_err(|e| {
        Status::failed_precondition(format!(
            "cannot read the served agent binary {}: {e}",
            path.display()
        ))
    })?;
    let key = (
        path.clone(),
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    );
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(hit) = cache.lock().expect("cache lock").get(&key) {
        return Ok(hit.clone());
    }
    let served = Served {
        sha256: super::digest::file_sha256(&path).await.map_err(internal)?,
        version: probe_version(&path).await,
        path,
    };
    cache
        .lock()
        .expect("cache lock")
        .insert(key, served.clone());
    Ok(served)
}

/// `PATH --version` → "0.1.0" from "launch-agent 0.1.0".
async fn probe_version(path: &std::path::Path) -> String {
    let output = tokio::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(5), output).await {
        Ok(Ok(output)) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            text.trim()
                .strip_prefix("launch-agent ")
                .filter(|v| parse(v).is_some())
                .unwrap_or_default()
                .to_owned()
        }
        _ => String::new(),
    }
}

fn parse(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// Whether the control plane at `control` accepts an agent at `agent`: the
/// same major version and the same minor or one behind.
pub fn accepts(control: &str, agent: &str) -> Result<(), String> {
    let (Some(c), Some(a)) = (parse(control), parse(agent)) else {
        return Err(format!(
            "launch-agent reports version {agent:?}, which is not a version: reinstall it from this control plane's /v1/agent/download/linux-amd64"
        ));
    };
    if a.0 == c.0 && (a.1 == c.1 || a.1 + 1 == c.1) {
        return Ok(());
    }
    if a > c {
        return Err(format!(
            "launch-agent {agent} is newer than the control plane {control}: upgrade the control plane first"
        ));
    }
    Err(format!(
        "launch-agent {agent} is more than one minor version behind the control plane {control}, which accepts {}.{}.x and {}.{}.x: reinstall it on the host from /v1/agent/download/linux-amd64",
        c.0,
        c.1,
        c.0,
        c.1.saturating_sub(1)
    ))
}

/// Refuses a Session whose agent says (in its metadata) a version this
/// control plane does not accept.
pub fn check_session(metadata: &MetadataMap, agent_id: &str) -> Result<(), Status> {
    let Some(version) = metadata
        .get(AGENT_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    accepts(CONTROL_VERSION, version).map_err(|message| {
        warn!(agent_id = %agent_id, version = %version, "agent version refused");
        Status::failed_precondition(message)
    })
}

/// `UpgradeAgents`: an upgrade mission per matching connected agent that
/// does not run the served binary.
pub async fn upgrade(
    state: &Arc<State>,
    request: UpgradeAgentsRequest,
) -> Result<UpgradeAgentsResponse, Status> {
    let served = served(state).await?;
    let pattern = |p: &str| {
        if p.is_empty() {
            "*".to_owned()
        } else {
            p.to_owned()
        }
    };
    let (services, environments) = (pattern(&request.service), pattern(&request.environment));
    let mut agents = state.store.agents().await.map_err(internal)?;
    agents.sort_by(|a, b| a.id.cmp(&b.id));
    // Connected to any replica: the upgrade mission reaches it through
    // its own (queued, then woken up there).
    let connected = state.store.connected_agents().await.map_err(internal)?;
    let mut response = UpgradeAgentsResponse {
        version: served.version.clone(),
        sha256: served.sha256.clone(),
        ..Default::default()
    };
    for agent in agents {
        if agent.revoked
            || !connected.contains(&agent.id)
            || !matches(&services, &agent.service)
            || !matches(&environments, &agent.environment)
        {
            continue;
        }
        if agent.agent_sha256 == served.sha256 {
            response.current += 1;
            continue;
        }
        if request.canary > 0 && response.upgrades.len() >= request.canary as usize {
            response.deferred += 1;
            continue;
        }
        let current = state
            .store
            .service(&agent.service, &agent.environment)
            .await
            .map_err(internal)?
            .and_then(|s| s.current_release_id)
            .unwrap_or_default();
        let mission_id = tokens::new_id("m");
        state
            .store
            .insert_mission(
                &mission_id,
                MissionKind::Upgrade,
                &agent.service,
                &agent.environment,
                &current,
            )
            .await
            .map_err(internal)?;
        info!(service = %agent.service, environment = %agent.environment, agent_id = %agent.id, mission_id = %mission_id, from = %agent.version, to = %served.version, "agent upgrade queued");
        let mission = state
            .store
            .mission(&mission_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("mission vanished after insert"))?;
        state.dispatch(&mission).await?;
        response.upgrades.push(AgentUpgrade {
            agent_id: agent.id.clone(),
            target: Some(ServiceRef {
                service: agent.service.clone(),
                environment: agent.environment.clone(),
            }),
            from_version: agent.version.clone(),
            mission_id,
        });
    }
    Ok(response)
}

/// `FetchAgentBinary`: the served binary in chunks, if it still is the one
/// the mission named.
pub async fn fetch(state: &State, sha256: &str) -> Result<Vec<BundleChunk>, Status> {
    let served = served(state).await?;
    if served.sha256 != sha256 {
        return Err(Status::failed_precondition(format!(
            "the served agent binary changed (sha256 {}, the mission names {sha256}): run `launch agents upgrade` again",
            served.sha256
        )));
    }
    let bytes = tokio::fs::read(&served.path).await.map_err(internal)?;
    if hex::encode(Sha256::digest(&bytes)) != sha256 {
        return Err(Status::failed_precondition(
            "the served agent binary changed while it was read: run `launch agents upgrade` again",
        ));
    }
    Ok(bytes
        .chunks(1 << 20)
        .map(|chunk| BundleChunk {
            data: chunk.to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_of_this_minor_or_one_behind_are_accepted() {
        let table = [
            ("0.3.2", "0.3.2", true),
            ("0.3.2", "0.3.0", true),
            ("0.3.2", "0.3.9", true),
            ("0.3.2", "0.2.7", true),
            ("0.3.2", "0.2.0-rc.1", true),
            ("0.3.2", "0.1.9", false),
            ("0.3.2", "0.4.0", false),
            ("1.0.0", "0.9.0", false),
            ("0.3.2", "garbage", false),
        ];
        for (control, agent, ok) in table {
            assert_eq!(accepts(control, agent).is_ok(), ok, "{control} vs {agent}");
        }
        let refusal = accepts("0.3.2", "0.1.9").unwrap_err();
        assert!(
            refusal.contains("more than one minor version behind")
                && refusal.contains("0.3.x and 0.2.x"),
            "{refusal}"
        );
        assert!(accepts("0.3.2", "0.4.0").unwrap_err().contains("newer"));
    }
}
