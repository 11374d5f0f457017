//! Watching a release after it went live. The health gate only vouches for
//! the moment of the deploy; a service that dies an hour later must not be
//! reported healthy. Every few seconds, while no mission runs, the agent
//! looks at the current release's containers: a container that exited (one-
//! shot services that exited 0 excepted), restarts or turns unhealthy makes
//! the service *degraded*, reported to the control plane with the exit code
//! and its last lines (redacted); recovery is reported too. Only changes are
//! sent; the uplink re-sends the latest report at every new session.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use launch_core::compose::{self, Variables};
use launch_core::redact::Redactor;
use launch_proto::ServiceHealth;

use crate::compose::docker_output;
use crate::health::{self, Verdict};

/// How often the current release is looked at.
pub const EVERY: Duration = Duration::from_secs(2);
const LAST_LINES: &str = "5";

/// What was last reported, so only changes go out.
#[derive(Default)]
pub struct Watch {
    last: Option<(String, bool, String)>,
}

impl Watch {
    /// Forget what was reported (a mission ran: report afresh).
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// Looks at `project`'s containers; a report when the state changed.
    pub async fn look(
        &mut self,
        project: &str,
        release_id: &str,
        release_dir: &Path,
        redactor: &Redactor,
    ) -> Option<ServiceHealth> {
        let containers = health::containers(project).await.ok()?;
        let one_shots = one_shots(release_dir);
        let (degraded, summary, container) = match health::judge(&containers, &one_shots) {
            Verdict::Ready => (false, String::new(), None),
            Verdict::Failed { container, reason } => (true, reason, Some(container)),
            // Starting or being recreated by hand: not a verdict yet.
            Verdict::Waiting(_) => return None,
        };
        let key = (release_id.to_owned(), degraded, summary.clone());
        if self.last.as_ref() == Some(&key) {
            return None;
        }
        self.last = Some(key);
        let mut message = summary;
        if let Some(container) = container
            && let Ok(logs) = docker_output(
                &["logs", "--tail", LAST_LINES, &container],
                Duration::from_secs(10),
            )
            .await
        {
            let lines: Vec<&str> = logs.lines().collect();
            if !lines.is_empty() {
                message.push_str("; last lines: ");
                message.push_str(&lines.join(" | "));
            }
        }
        Some(ServiceHealth {
            release_id: release_id.to_owned(),
            degraded,
            message: redactor.redact(&message).into_owned(),
        })
    }
}

/// The one-shot services of the release in `release_dir` (none when its
/// compose file cannot be read: then every exit counts).
fn one_shots(release_dir: &Path) -> BTreeSet<String> {
    let Some(file) = launch_core::bundle::COMPOSE_FILES
        .iter()
        .find(|f| release_dir.join(f).is_file())
    else {
        return BTreeSet::new();
    };
    let Ok(text) = std::fs::read_to_string(release_dir.join(file)) else {
        return BTreeSet::new();
    };
    let mut vars = Variables::new();
    for (name, value) in crate::release::read_env(release_dir) {
        vars.set(name, value);
    }
    for (name, value) in std::env::vars() {
        vars.set(name, value);
    }
    compose::load(file, &text, &vars)
        .map(|project| project.one_shot_services())
        .unwrap_or_default()
}
