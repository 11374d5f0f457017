//! The store's previews: one row per live preview of a service (created by
//! its first deploy, touched by every later one), read back with the state
//! of its newest release's mission and where that release came from.
//! Removing a preview deletes its row, its secret overrides, and queues the
//! `preview_remove` mission for its agent in one transaction, so a preview
//! is either live or on its way out, never half-forgotten.

use sqlx::{Any, Row, Transaction};

use launch_proto::{MissionKind, MissionState};

use super::batch::Statement;
use super::{NewDeploy, Result, Store, now_ms};

/// A live preview with its newest release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviewRow {
    pub service: String,
    pub environment: String,
    pub preview: String,
    pub created: i64,
    pub last_deploy: i64,
    pub release_id: String,
    pub git_ref: String,
    pub state: MissionState,
    pub url: String,
    pub repo: String,
    pub pr: u64,
}

/// The `secrets` environment holding a preview's overrides (see the
/// migration): `<environment>@<preview>`, or the environment itself.
pub fn secrets_environment(environment: &str, preview: &str) -> String {
    if preview.is_empty() {
        environment.to_owned()
    } else {
        format!("{environment}@{preview}")
    }
}

pub(super) fn deploy_statement(deploy: &NewDeploy, now: i64) -> Statement {
    Statement::new(
        "INSERT INTO previews (service, environment, preview, created, last_deploy, release_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (service, environment, preview) DO UPDATE SET last_deploy = excluded.last_deploy, release_id = excluded.release_id",
        vec![
            (&deploy.service).into(),
            (&deploy.environment).into(),
            (&deploy.preview).into(),
            now.into(),
            now.into(),
            (&deploy.release_id).into(),
        ],
    )
}

/// A retired service's previews go with its host: their rows and secret
/// overrides, so a service created again under the name starts clean.
pub(super) async fn forget_all(
    tx: &mut Transaction<'_, Any>,
    service: &str,
    environment: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM previews WHERE service = $1 AND environment = $2")
        .bind(service)
        .bind(environment)
        .execute(&mut **tx)
        .await?;
    // Environments are DNS labels: no LIKE wildcard can be in one.
    sqlx::query("DELETE FROM secrets WHERE service = $1 AND environment LIKE $2")
        .bind(service)
        .bind(format!("{environment}@%"))
        .execute(&mut **tx)
        .await
        .map(drop)
}

const SELECT: &str = "SELECT p.service, p.environment, p.preview, p.created, p.last_deploy, p.release_id, \
     COALESCE(r.git_ref, '') AS git_ref, COALESCE(m.state, 'queued') AS state, COALESCE(m.url, '') AS url, \
     COALESCE(s.repo, '') AS repo, COALESCE(s.pr, 0) AS pr \
     FROM previews p \
     LEFT JOIN releases r ON r.id = p.release_id \
     LEFT JOIN missions m ON m.id = r.mission_id \
     LEFT JOIN release_sources s ON s.release_id = p.release_id";

fn preview_row(row: &sqlx::any::AnyRow) -> PreviewRow {
    PreviewRow {
        service: row.get("service"),
        environment: row.get("environment"),
        preview: row.get("preview"),
        created: row.get("created"),
        last_deploy: row.get("last_deploy"),
        release_id: row.get("release_id"),
        git_ref: row.get("git_ref"),
        state: MissionState::from_label(row.get("state")).unwrap_or(MissionState::Unspecified),
        url: row.get("url"),
        repo: row.get("repo"),
        pr: row.get::<i64, _>("pr").max(0) as u64,
    }
}

impl Store {
    /// Live previews, oldest first; of one service and environment when
    /// `service` is not empty.
    pub async fn previews(&self, service: &str, environment: &str) -> Result<Vec<PreviewRow>> {
        let query = format!(
            "{SELECT} WHERE ($1 = '' OR (p.service = $2 AND p.environment = $3)) ORDER BY p.created, p.preview"
        );
        sqlx::query(&query)
            .bind(service)
            .bind(service)
            .bind(environment)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(preview_row).collect())
    }

    /// The names of the live previews of one service and environment.
    pub async fn preview_names(&self, service: &str, environment: &str) -> Result<Vec<String>> {
        sqlx::query(
            "SELECT preview FROM previews WHERE service = $1 AND environment = $2 ORDER BY preview",
        )
        .bind(service)
        .bind(environment)
        .fetch_all(&self.pool)
        .await
        .map(|rows| rows.iter().map(|r| r.get("preview")).collect())
    }

    /// Live previews whose last deploy is older than `before` (unix ms).
    pub async fn idle_previews(&self, before: i64) -> Result<Vec<PreviewRow>> {
        let query = format!("{SELECT} WHERE p.last_deploy < $1 ORDER BY p.created");
        sqlx::query(&query)
            .bind(before)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(preview_row).collect())
    }

    /// The services and environments with a release from `repo` (any pull
    /// request), for the webhook's `closed`.
    pub async fn services_from_repo(&self, repo: &str) -> Result<Vec<(String, String)>> {
        sqlx::query("SELECT DISTINCT r.service, r.environment FROM releases r JOIN release_sources s ON s.release_id = r.id WHERE s.repo = $1 ORDER BY r.service, r.environment")
            .bind(repo)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(|r| (r.get("service"), r.get("environment"))).collect())
    }

    /// Forgets a live preview and queues its teardown mission, in one
    /// transaction. `None` when no such preview is live.
    pub async fn remove_preview(
        &self,
        service: &str,
        environment: &str,
        preview: &str,
        mission_id: &str,
    ) -> Result<Option<PreviewRow>> {
        let query =
            format!("{SELECT} WHERE p.service = $1 AND p.environment = $2 AND p.preview = $3");
        let mut tx = self.writer.begin().await?;
        let Some(row) = sqlx::query(&query)
            .bind(service)
            .bind(environment)
            .bind(preview)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(preview_row)
        else {
            return Ok(None);
        };
        sqlx::query(
            "DELETE FROM previews WHERE service = $1 AND environment = $2 AND preview = $3",
        )
        .bind(service)
        .bind(environment)
        .bind(preview)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM secrets WHERE service = $1 AND environment = $2")
            .bind(service)
            .bind(secrets_environment(environment, preview))
            .execute(&mut *tx)
            .await?;
        let now = now_ms();
        sqlx::query("INSERT INTO missions (id, kind, service, environment, release_id, state, created, updated, preview) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8)")
            .bind(mission_id)
            .bind(MissionKind::PreviewRemove.label())
            .bind(service)
            .bind(environment)
            .bind(&row.release_id)
            .bind(now)
            .bind(now)
            .bind(preview)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(row))
    }
}
