//! The store's GitHub tables: where a release came from (repository and pull
//! request, from `launch deploy --repo/--pr`), the webhook deliveries already
//! handled (so a redelivery changes nothing), and what the reporter keeps on
//! each pull request — its one comment's id and a line per service — so a
//! restarted control plane edits the same comment instead of adding one.

use sqlx::Row;

use super::batch::Statement;
use super::{Result, Store, now_ms};

/// Where a release came from on GitHub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseSource {
    /// `owner/name`.
    pub repo: String,
    /// The pull request number; 0 when the release is not from one.
    pub pr: u64,
}

/// One line of a pull request's comment: the newest release of one service
/// and environment deployed from that pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrEntry {
    pub service: String,
    pub environment: String,
    pub release_id: String,
    pub git_ref: String,
    /// `deploying`, `live`, `failed` or `rolled back`.
    pub state: String,
    pub url: String,
    /// The outcome's message and, on failure, the last lines of the log.
    pub detail: String,
}

/// A pull request as the reporter knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullRequest {
    /// 0 until the comment has been created.
    pub comment_id: u64,
    pub closed: bool,
}

/// The statement that records where a release came from.
pub(super) fn release_source_statement(release_id: &str, source: &ReleaseSource) -> Statement {
    Statement::new(
        "INSERT INTO release_sources (release_id, repo, pr) VALUES ($1, $2, $3)",
        vec![
            release_id.into(),
            (&source.repo).into(),
            (source.pr as i64).into(),
        ],
    )
}

impl Store {
    pub async fn release_source(&self, release_id: &str) -> Result<Option<ReleaseSource>> {
        sqlx::query("SELECT repo, pr FROM release_sources WHERE release_id = $1")
            .bind(release_id)
            .fetch_optional(&self.pool)
            .await
            .map(|row| {
                row.map(|row| ReleaseSource {
                    repo: row.get("repo"),
                    pr: row.get::<i64, _>("pr").max(0) as u64,
                })
            })
    }

    /// Records a delivery and marks a pull request closed, in one
    /// transaction; false (and nothing changed) when the delivery was seen.
    pub async fn close_pull_request(&self, delivery: &str, repo: &str, pr: u64) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let fresh = sqlx::query("INSERT INTO github_deliveries (id, event, received) VALUES ($1, 'pull_request', $2) ON CONFLICT (id) DO NOTHING")
            .bind(delivery)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if !fresh {
            return Ok(false);
        }
        sqlx::query("INSERT INTO github_pull_requests (repo, pr, closed) VALUES ($1, $2, 1) ON CONFLICT (repo, pr) DO UPDATE SET closed = 1")
            .bind(repo)
            .bind(pr as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn pull_request(&self, repo: &str, pr: u64) -> Result<PullRequest> {
        sqlx::query(
            "SELECT comment_id, closed FROM github_pull_requests WHERE repo = $1 AND pr = $2",
        )
        .bind(repo)
        .bind(pr as i64)
        .fetch_optional(&self.pool)
        .await
        .map(|row| {
            row.map(|row| PullRequest {
                comment_id: row.get::<i64, _>("comment_id").max(0) as u64,
                closed: row.get::<i64, _>("closed") != 0,
            })
            .unwrap_or_default()
        })
    }

    pub async fn set_pr_comment(&self, repo: &str, pr: u64, comment_id: u64) -> Result<()> {
        sqlx::query("INSERT INTO github_pull_requests (repo, pr, comment_id) VALUES ($1, $2, $3) ON CONFLICT (repo, pr) DO UPDATE SET comment_id = excluded.comment_id")
            .bind(repo)
            .bind(pr as i64)
            .bind(comment_id as i64)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    /// Replaces the line of `entry`'s service and environment on the pull request.
    pub async fn put_pr_entry(&self, repo: &str, pr: u64, entry: &PrEntry) -> Result<()> {
        sqlx::query("INSERT INTO github_pr_entries (repo, pr, service, environment, release_id, git_ref, state, url, detail, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (repo, pr, service, environment) DO UPDATE SET release_id = excluded.release_id, git_ref = excluded.git_ref, state = excluded.state, url = excluded.url, detail = excluded.detail, updated = excluded.updated")
            .bind(repo)
            .bind(pr as i64)
            .bind(&entry.service)
            .bind(&entry.environment)
            .bind(&entry.release_id)
            .bind(&entry.git_ref)
            .bind(&entry.state)
            .bind(&entry.url)
            .bind(&entry.detail)
            .bind(now_ms())
            .execute(&self.writer)
            .await
            .map(drop)
    }

    /// The pull request's lines, by service then environment.
    pub async fn pr_entries(&self, repo: &str, pr: u64) -> Result<Vec<PrEntry>> {
        sqlx::query("SELECT * FROM github_pr_entries WHERE repo = $1 AND pr = $2 ORDER BY service, environment")
            .bind(repo)
            .bind(pr as i64)
            .fetch_all(&self.pool)
            .await
            .map(|rows| {
                rows.iter()
                    .map(|row| PrEntry {
                        service: row.get("service"),
                        environment: row.get("environment"),
                        release_id: row.get("release_id"),
                        git_ref: row.get("git_ref"),
                        state: row.get("state"),
                        url: row.get("url"),
                        detail: row.get("detail"),
                    })
                    .collect()
            })
    }

    pub async fn github_deployment(&self, release_id: &str) -> Result<Option<u64>> {
        sqlx::query("SELECT deployment_id FROM github_deployments WHERE release_id = $1")
            .bind(release_id)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.map(|row| row.get::<i64, _>("deployment_id").max(0) as u64))
    }

    pub async fn set_github_deployment(&self, release_id: &str, deployment_id: u64) -> Result<()> {
        sqlx::query("INSERT INTO github_deployments (release_id, deployment_id) VALUES ($1, $2) ON CONFLICT (release_id) DO UPDATE SET deployment_id = excluded.deployment_id")
            .bind(release_id)
            .bind(deployment_id as i64)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    /// The newest `limit` lines of a mission, oldest first.
    pub async fn last_lines(&self, mission_id: &str, limit: i64) -> Result<Vec<String>> {
        let mut lines: Vec<String> = sqlx::query(
            "SELECT text FROM log_lines WHERE mission_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(mission_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| row.get("text"))
        .collect();
        lines.reverse();
        Ok(lines)
    }
}
