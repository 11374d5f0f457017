//! The reporting task: one event at a time, it reads the mission's current
//! state from the store (so late or repeated events converge on the truth)
//! and brings GitHub up to date — the commit status `launch/<service>`, the
//! release's Deployment and its status, and the pull request's one comment,
//! found by a hidden marker if the store lost its id, and re-created if
//! someone deleted it. Failures are logged and dropped: GitHub being down
//! never touches a deploy.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use launch_proto::{MissionKind, MissionState};

use super::ReportEvent;
use super::rest::{Client, GithubError};
use crate::server::store::Store;
use crate::server::store::github::PrEntry;

/// Marks the comment Launch owns on a pull request.
pub const COMMENT_MARKER: &str = "<!-- launch:pr-comment -->";
/// Log lines quoted in the comment when a deploy fails.
const FAILURE_LINES: i64 = 12;

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
}

pub(super) async fn run(
    client: Arc<Client>,
    store: Store,
    mut events: UnboundedReceiver<ReportEvent>,
    shutdown: CancellationToken,
) {
    match client.check_token().await {
        Ok(()) => info!("GitHub reporting is on"),
        Err(err) if err.status() == Some(401) => warn!(
            cause = %err,
            "GitHub refused the token of --github-token-file: reports will fail until it is replaced"
        ),
        Err(err) => warn!(cause = %err, "cannot check the GitHub token now: reporting anyway"),
    }
    let mut reporter = Reporter {
        client,
        store,
        reported: HashMap::new(),
    };
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        if let Err(err) = reporter.handle(&event).await {
            warn!(cause = %err, ?event, "could not report to GitHub");
        }
    }
}

struct Reporter {
    client: Arc<Client>,
    store: Store,
    /// The state last reported per mission, so a repeated event posts nothing.
    reported: HashMap<String, MissionState>,
}

/// How a mission state reads on GitHub.
struct Outcome {
    /// For the comment.
    word: &'static str,
    /// Commit status state.
    status: &'static str,
    /// Deployment status state.
    deployment: &'static str,
}

fn outcome(state: MissionState) -> Outcome {
    let (word, status, deployment) = match state {
        MissionState::Running => ("deploying", "pending", "in_progress"),
        MissionState::Healthy => ("live", "success", "success"),
        MissionState::Failed => ("failed", "failure", "failure"),
        MissionState::RolledBack => ("rolled back", "failure", "failure"),
        MissionState::Cancelled => ("cancelled", "error", "error"),
        _ => ("deploying", "pending", "queued"),
    };
    Outcome {
        word,
        status,
        deployment,
    }
}

impl Reporter {
    async fn handle(&mut self, event: &ReportEvent) -> Result<(), ReportError> {
        match event {
            ReportEvent::Mission(mission_id) => self.mission(mission_id).await,
            ReportEvent::PullRequestClosed { repo, pr } => self.sync_comment(repo, *pr).await,
        }
    }

    async fn mission(&mut self, mission_id: &str) -> Result<(), ReportError> {
        let Some(mission) = self.store.mission(mission_id).await? else {
            return Ok(());
        };
        if mission.kind != MissionKind::Deploy {
            return Ok(());
        }
        let Some(source) = self.store.release_source(&mission.release_id).await? else {
            return Ok(());
        };
        if self.reported.get(mission_id) == Some(&mission.state) {
            return Ok(());
        }
        let git_ref = self
            .store
            .release(&mission.release_id)
            .await?
            .map(|r| r.git_ref)
            .unwrap_or_default();
        let outcome = outcome(mission.state);
        let url = if mission.state == MissionState::Healthy {
            mission.url.clone()
        } else {
            String::new()
        };
        let description = match mission.state {
            MissionState::Healthy => format!("{} is live", mission.service),
            _ if mission.message.is_empty() => format!("{} is {}", mission.service, outcome.word),
            _ => mission.message.clone(),
        };
        let repo = &source.repo;

        if is_commit_sha(&git_ref) {
            let context = if mission.environment == "prod" {
                format!("launch/{}", mission.service)
            } else {
                format!("launch/{}-{}", mission.service, mission.environment)
            };
            self.client
                .create_status(repo, &git_ref, outcome.status, &url, &description, &context)
                .await?;
        }
        if !git_ref.is_empty() {
            let deployment = match self.store.github_deployment(&mission.release_id).await? {
                Some(id) => id,
                None => {
                    let environment = format!("{}-{}", mission.environment, mission.service);
                    let id = self
                        .client
                        .create_deployment(
                            repo,
                            &git_ref,
                            &environment,
                            &format!("launch release {}", mission.release_id),
                            source.pr > 0,
                        )
                        .await?;
                    self.store
                        .set_github_deployment(&mission.release_id, id)
                        .await?;
                    id
                }
            };
            self.client
                .create_deployment_status(repo, deployment, outcome.deployment, &url, &description)
                .await?;
        }
        if source.pr > 0 {
            let mut detail = mission.message.clone();
            if matches!(
                mission.state,
                MissionState::Failed | MissionState::RolledBack
            ) {
                let lines = self.store.last_lines(&mission.id, FAILURE_LINES).await?;
                if !lines.is_empty() {
                    detail.push_str("\n\n```\n");
                    detail.push_str(&lines.join("\n").replace("```", "'''"));
                    detail.push_str("\n```");
                }
            }
            let entry = PrEntry {
                service: mission.service.clone(),
                environment: mission.environment.clone(),
                release_id: mission.release_id.clone(),
                git_ref,
                state: outcome.word.to_owned(),
                url,
                detail,
            };
            self.store.put_pr_entry(repo, source.pr, &entry).await?;
            self.sync_comment(repo, source.pr).await?;
        }
        self.reported.insert(mission.id, mission.state);
        Ok(())
    }

    /// Makes the pull request's one comment say what the store holds.
    async fn sync_comment(&mut self, repo: &str, pr: u64) -> Result<(), ReportError> {
        let state = self.store.pull_request(repo, pr).await?;
        let entries = self.store.pr_entries(repo, pr).await?;
        if entries.is_empty() {
            return Ok(());
        }
        let body = render_comment(&entries, state.closed);
        let mut comment_id = state.comment_id;
        if comment_id == 0 {
            comment_id = self
                .client
                .find_comment(repo, pr, COMMENT_MARKER)
                .await?
                .unwrap_or_default();
        }
        if comment_id != 0 {
            match self.client.update_comment(repo, comment_id, &body).await {
                Err(err) if err.status() == Some(404) => comment_id = 0,
                other => other?,
            }
        }
        if comment_id == 0 {
            comment_id = self.client.create_comment(repo, pr, &body).await?;
        }
        if comment_id != state.comment_id {
            self.store.set_pr_comment(repo, pr, comment_id).await?;
        }
        Ok(())
    }
}

/// A full 40-hex commit id: the only ref GitHub's statuses API takes.
fn is_commit_sha(git_ref: &str) -> bool {
    git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The comment: a table of every service deployed from the pull request and,
/// below it, the details of those that failed.
pub fn render_comment(entries: &[PrEntry], closed: bool) -> String {
    let cell = |text: &str| text.replace('|', "\\|").replace('\n', " ");
    let mut out = String::new();
    out.push_str(COMMENT_MARKER);
    out.push_str("\n### Launch\n\n");
    if closed {
        out.push_str("This pull request is closed.\n\n");
    }
    out.push_str("| service | environment | state | URL | commit |\n|---|---|---|---|---|\n");
    for entry in entries {
        let url = if entry.url.is_empty() {
            "—".to_owned()
        } else {
            format!("<{}>", cell(&entry.url))
        };
        let commit: String = entry.git_ref.chars().take(12).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | `{}` |\n",
            cell(&entry.service),
            cell(&entry.environment),
            cell(&entry.state),
            url,
            cell(&commit),
        ));
    }
    for entry in entries
        .iter()
        .filter(|e| e.state != "live" && !e.detail.is_empty())
    {
        let mut detail = entry.detail.lines();
        let summary = detail.next().unwrap_or_default();
        out.push_str(&format!(
            "\n<details><summary>{} ({}) {}: {}</summary>\n\n{}\n</details>\n",
            cell(&entry.service),
            cell(&entry.environment),
            cell(&entry.state),
            cell(summary),
            detail.collect::<Vec<_>>().join("\n").trim(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(service: &str, state: &str, detail: &str) -> PrEntry {
        PrEntry {
            service: service.into(),
            environment: "prod".into(),
            release_id: "r-1".into(),
            git_ref: "0123456789abcdef0123456789abcdef01234567".into(),
            state: state.into(),
            url: if state == "live" {
                "https://hello.example.com/".into()
            } else {
                String::new()
            },
            detail: detail.into(),
        }
    }

    #[test]
    fn comment_lists_every_service_and_details_only_the_failed_ones() {
        let body = render_comment(
            &[
                entry(
                    "api",
                    "failed",
                    "health gate timed out\n\n```\npanic: boom\n```",
                ),
                entry("hello", "live", "healthy"),
            ],
            false,
        );
        assert!(body.starts_with(COMMENT_MARKER), "{body}");
        assert!(
            body.contains(
                "| hello | prod | live | <https://hello.example.com/> | `0123456789ab` |"
            ),
            "{body}"
        );
        assert!(body.contains("| api | prod | failed | — |"), "{body}");
        assert!(
            body.contains("<summary>api (prod) failed: health gate timed out</summary>"),
            "{body}"
        );
        assert!(body.contains("panic: boom"), "{body}");
        assert!(!body.contains("<summary>hello"), "{body}");
        assert!(!body.contains("closed"), "{body}");
        assert!(
            render_comment(&[entry("hello", "live", "")], true)
                .contains("This pull request is closed.")
        );
    }

    #[test]
    fn table_cells_cannot_break_the_table() {
        let body = render_comment(&[entry("a", "failed", "x | y\nz")], false);
        assert!(body.contains("failed: x \\| y</summary>"), "{body}");
    }

    #[test]
    fn only_full_commit_ids_get_a_status() {
        assert!(is_commit_sha("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_sha("main"));
        assert!(!is_commit_sha("0123456"));
    }
}
