//! The queries of releases and missions: a deploy recorded in one
//! transaction (service, secrets, release and mission, the mission already
//! `dispatched` when its agent's session is on this replica), the missions an
//! agent has yet to acknowledge or must resume, and the moves of a mission's
//! state, which carry its release's state and the service's current release
//! with them.

use sqlx::{AnyPool, Row};

use launch_proto::{MissionKind, MissionState, ReleaseState};

use super::batch::{Batch, Statement};
use super::{Engine, Result, Store, TagSource, github, now_ms, previews, secrets, tags};

/// What a deploy records, in one transaction.
#[derive(Clone, Debug)]
pub struct NewDeploy {
    pub service: String,
    pub environment: String,
    pub git_ref: String,
    pub bundle_sha256: String,
    pub bundle_size: i64,
    /// `(key, nonce, ciphertext)` of the header's secrets, already sealed.
    pub secrets: Vec<(String, Vec<u8>, Vec<u8>)>,
    pub release_id: String,
    pub mission_id: String,
    /// Where the release came from on GitHub (`--repo`/`--pr`), if said.
    pub source: Option<github::ReleaseSource>,
    /// The preview deployed (empty: the environment itself).
    pub preview: String,
    /// The release's launch.toml `[tags]`: the keys launch.toml owns become
    /// exactly these (not for a preview, which has no tags of its own).
    pub tags: Vec<(String, String)>,
    /// The agent whose session here the mission goes down next, if one is
    /// held: the mission is recorded `dispatched` to it in the same
    /// transaction (else `queued`). If the send then fails, [`Store::requeue`]
    /// takes that back; if this replica dies first, the agent's next
    /// session gets it with the other unacknowledged missions.
    pub dispatch_to: Option<String>,
}

/// What [`Store::record_deploy`] wrote, and the service's host names and
/// address read in the same statement, which its mission message carries.
#[derive(Clone, Debug)]
pub struct RecordedDeploy {
    pub mission: MissionRow,
    pub fqdn: String,
    pub host_address: String,
}

#[derive(Clone, Debug)]
pub struct ReleaseRow {
    pub id: String,
    pub service: String,
    pub environment: String,
    pub git_ref: String,
    pub bundle_sha256: String,
    pub bundle_size: i64,
    pub state: ReleaseState,
    pub created: i64,
    pub mission_id: String,
}

#[derive(Clone, Debug)]
pub struct MissionRow {
    pub id: String,
    pub kind: MissionKind,
    pub service: String,
    pub environment: String,
    pub release_id: String,
    pub state: MissionState,
    pub message: String,
    pub url: String,
    pub agent_id: String,
    pub result_release_id: String,
    pub created: i64,
    pub updated: i64,
    /// The preview the mission is about (empty: the environment itself).
    pub preview: String,
}

pub(super) fn release_row(row: &sqlx::any::AnyRow) -> ReleaseRow {
    ReleaseRow {
        id: row.get("id"),
        service: row.get("service"),
        environment: row.get("environment"),
        git_ref: row.get("git_ref"),
        bundle_sha256: row.get("bundle_sha256"),
        bundle_size: row.get("bundle_size"),
        state: ReleaseState::from_label(row.get("state")).unwrap_or(ReleaseState::Unspecified),
        created: row.get("created"),
        mission_id: row.get("mission_id"),
    }
}

pub(super) fn mission_row(row: &sqlx::any::AnyRow) -> MissionRow {
    MissionRow {
        id: row.get("id"),
        kind: MissionKind::from_label(row.get("kind")).unwrap_or(MissionKind::Unspecified),
        service: row.get("service"),
        environment: row.get("environment"),
        release_id: row.get("release_id"),
        state: MissionState::from_label(row.get("state")).unwrap_or(MissionState::Unspecified),
        message: row.get("message"),
        url: row.get("url"),
        agent_id: row.get("agent_id"),
        result_release_id: row.get("result_release_id"),
        created: row.get("created"),
        updated: row.get("updated"),
        preview: row.get("preview"),
    }
}

/// The statements that record `deploy` at `now`, in order. Only the first,
/// the service's upsert, returns a row: the service's host names and
/// address.
fn deploy_statements(deploy: &NewDeploy, now: i64) -> Vec<Statement> {
    let mut statements = vec![Statement::new(
        "INSERT INTO services (service, environment, created) VALUES ($1, $2, $3) ON CONFLICT (service, environment) DO UPDATE SET retired = 0 RETURNING fqdn, host_address",
        vec![
            (&deploy.service).into(),
            (&deploy.environment).into(),
            now.into(),
        ],
    )];
    let secrets_environment = previews::secrets_environment(&deploy.environment, &deploy.preview);
    for (key, nonce, ciphertext) in &deploy.secrets {
        statements.push(secrets::put_statement(
            &deploy.service,
            &secrets_environment,
            key,
            nonce,
            ciphertext,
            now,
        ));
    }
    statements.push(Statement::new(
        "INSERT INTO releases (id, service, environment, git_ref, bundle_sha256, bundle_size, state, created, mission_id, preview) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9)",
        vec![
            (&deploy.release_id).into(),
            (&deploy.service).into(),
            (&deploy.environment).into(),
            (&deploy.git_ref).into(),
            (&deploy.bundle_sha256).into(),
            deploy.bundle_size.into(),
            now.into(),
            (&deploy.mission_id).into(),
            (&deploy.preview).into(),
        ],
    ));
    let (state, agent_id) = mission_state(deploy);
    statements.push(Statement::new(
        "INSERT INTO missions (id, kind, service, environment, release_id, state, created, updated, preview, agent_id) VALUES ($1, 'deploy', $2, $3, $4, $5, $6, $7, $8, $9)",
        vec![
            (&deploy.mission_id).into(),
            (&deploy.service).into(),
            (&deploy.environment).into(),
            (&deploy.release_id).into(),
            state.label().into(),
            now.into(),
            now.into(),
            (&deploy.preview).into(),
            agent_id.into(),
        ],
    ));
    if let Some(source) = &deploy.source {
        statements.push(github::release_source_statement(&deploy.release_id, source));
    }
    if deploy.preview.is_empty() {
        statements.extend(tags::replace_statements(
            &deploy.service,
            &deploy.environment,
            TagSource::LaunchToml,
            &deploy.tags,
            now,
        ));
    } else {
        statements.push(previews::deploy_statement(deploy, now));
    }
    statements
}

/// The state a deploy's mission is recorded in, and its agent.
fn mission_state(deploy: &NewDeploy) -> (MissionState, &str) {
    match &deploy.dispatch_to {
        Some(agent_id) => (MissionState::Dispatched, agent_id),
        None => (MissionState::Queued, ""),
    }
}

/// Records `deploys` in one transaction, each deploy's statements as one
/// batch (one hand-off on SQLite, compiled once for every deploy of the
/// same shape); returns what each recorded, in order.
pub(super) async fn record_deploys(
    engine: Engine,
    writer: &AnyPool,
    deploys: &[NewDeploy],
) -> Result<Vec<RecordedDeploy>> {
    let now = now_ms();
    let mut tx = writer.begin().await?;
    let mut services = Vec::with_capacity(deploys.len());
    for deploy in deploys {
        // A batch a deploy, not one for the group: the group's text would
        // never repeat, and compiling it cost SQLite more than the
        // hand-off a deploy this saves.
        let mut batch = Batch::default();
        batch.extend(deploy_statements(deploy, now));
        services.extend(batch.fetch_all(engine, &mut tx).await?);
    }
    if services.len() != deploys.len() {
        return Err(sqlx::Error::Protocol(format!(
            "{} deploys returned {} service rows",
            deploys.len(),
            services.len()
        )));
    }
    tx.commit().await?;
    Ok(deploys
        .iter()
        .zip(services)
        .map(|(deploy, service)| recorded(deploy, &service, now))
        .collect())
}

/// What `deploy` recorded at `now`, with `service` its services row's
/// `RETURNING fqdn, host_address`.
fn recorded(deploy: &NewDeploy, service: &sqlx::any::AnyRow, now: i64) -> RecordedDeploy {
    let (state, agent_id) = mission_state(deploy);
    RecordedDeploy {
        mission: MissionRow {
            id: deploy.mission_id.clone(),
            kind: MissionKind::Deploy,
            service: deploy.service.clone(),
            environment: deploy.environment.clone(),
            release_id: deploy.release_id.clone(),
            state,
            message: String::new(),
            url: String::new(),
            agent_id: agent_id.to_owned(),
            result_release_id: String::new(),
            created: now,
            updated: now,
            preview: deploy.preview.clone(),
        },
        fqdn: service.get("fqdn"),
        host_address: service.get("host_address"),
    }
}

/// One deploy recorded alone: on SQLite by [`record_deploys`]; on
/// PostgreSQL as one statement, its own transaction in one round trip
/// ([`Batch::fetch_all_as_one`]) — a deploy's statements touch distinct
/// rows (its service's, its secrets', new release and mission rows, and
/// launch.toml's tags, the undeclared ones deleted and the declared ones
/// upserted) and read none another writes.
pub(super) async fn record_one(
    engine: Engine,
    writer: &AnyPool,
    deploy: &NewDeploy,
) -> Result<RecordedDeploy> {
    match engine {
        Engine::Sqlite => {
            let mut recorded = record_deploys(engine, writer, std::slice::from_ref(deploy)).await?;
            Ok(recorded.remove(0))
        }
        Engine::Postgres => {
            let now = now_ms();
            let mut batch = Batch::default();
            batch.extend(deploy_statements(deploy, now));
            let rows = batch.fetch_all_as_one(writer).await?;
            let [service] = rows.as_slice() else {
                return Err(sqlx::Error::Protocol(format!(
                    "a deploy returned {} service rows",
                    rows.len()
                )));
            };
            Ok(recorded(deploy, service, now))
        }
    }
}

impl Store {
    /// Records a deploy: service (if missing), secrets, release (pending)
    /// and mission (queued, or dispatched to `dispatch_to`) in one
    /// transaction — on SQLite shared with the deploys recorded at the same
    /// time ([`super::deploy_writer`]); returns the mission as stored.
    pub async fn record_deploy(&self, deploy: &NewDeploy) -> Result<RecordedDeploy> {
        match &self.deploy_writer {
            Some(group) => group.record(deploy.clone()).await,
            None => record_one(self.engine, &self.writer, deploy).await,
        }
    }

    /// A mission recorded `dispatched` to `agent_id` whose send failed goes
    /// back to `queued` (unless it moved on meanwhile).
    pub async fn requeue(&self, mission_id: &str, agent_id: &str) -> Result<()> {
        sqlx::query("UPDATE missions SET state = 'queued', agent_id = '', updated = $1 WHERE id = $2 AND state = 'dispatched' AND agent_id = $3")
            .bind(now_ms())
            .bind(mission_id)
            .bind(agent_id)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    pub async fn insert_mission(
        &self,
        id: &str,
        kind: MissionKind,
        service: &str,
        environment: &str,
        release_id: &str,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query("INSERT INTO missions (id, kind, service, environment, release_id, state, created, updated) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7)")
            .bind(id)
            .bind(kind.label())
            .bind(service)
            .bind(environment)
            .bind(release_id)
            .bind(now)
            .bind(now)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    pub async fn release(&self, id: &str) -> Result<Option<ReleaseRow>> {
        sqlx::query("SELECT * FROM releases WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.as_ref().map(release_row))
    }

    /// Newest first.
    pub async fn releases(&self, service: &str, environment: &str) -> Result<Vec<ReleaseRow>> {
        sqlx::query("SELECT * FROM releases WHERE service = $1 AND environment = $2 AND retired = 0 AND preview = '' ORDER BY id DESC")
            .bind(service)
            .bind(environment)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(release_row).collect())
    }

    /// Newest first, with the releases of retired incarnations of the
    /// service (for audit); the flag says which.
    pub async fn releases_with_retired(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<Vec<(ReleaseRow, bool)>> {
        sqlx::query("SELECT * FROM releases WHERE service = $1 AND environment = $2 AND preview = '' ORDER BY id DESC")
            .bind(service)
            .bind(environment)
            .fetch_all(&self.pool)
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| (release_row(r), r.get::<i64, _>("retired") != 0))
                    .collect()
            })
    }

    pub async fn mission(&self, id: &str) -> Result<Option<MissionRow>> {
        sqlx::query("SELECT * FROM missions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.as_ref().map(mission_row))
    }

    pub async fn newest_mission(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<Option<MissionRow>> {
        sqlx::query(
            "SELECT * FROM missions WHERE service = $1 AND environment = $2 AND retired = 0 AND preview = '' ORDER BY id DESC LIMIT 1",
        )
        .bind(service)
        .bind(environment)
        .fetch_optional(&self.pool)
        .await
        .map(|row| row.as_ref().map(mission_row))
    }

    /// The newest mission that left a URL (the service's address).
    pub async fn newest_url(&self, service: &str, environment: &str) -> Result<Option<String>> {
        sqlx::query("SELECT url FROM missions WHERE service = $1 AND environment = $2 AND retired = 0 AND preview = '' AND url != '' ORDER BY id DESC LIMIT 1")
            .bind(service)
            .bind(environment)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.map(|r| r.get("url")))
    }

    /// Missions an agent of this service has not acknowledged yet, oldest first.
    pub async fn unacked_missions(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<Vec<MissionRow>> {
        sqlx::query("SELECT * FROM missions WHERE service = $1 AND environment = $2 AND retired = 0 AND state IN ('queued', 'dispatched') ORDER BY id")
            .bind(service)
            .bind(environment)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(mission_row).collect())
    }

    /// Every queued mission of every service, oldest first: what the
    /// periodic wake-up check dispatches to the sessions a replica holds, in
    /// one query however many it holds (`missions_queued`, a partial index,
    /// keeps it from reading the finished ones).
    pub async fn queued_missions(&self) -> Result<Vec<MissionRow>> {
        sqlx::query("SELECT * FROM missions WHERE state = 'queued' AND retired = 0 ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(mission_row).collect())
    }

    /// Missions whose log numbering an agent must continue: unfinished ones
    /// and the newest one.
    pub async fn missions_to_resume(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<Vec<MissionRow>> {
        sqlx::query("SELECT * FROM missions WHERE service = $1 AND environment = $2 AND retired = 0 AND (state IN ('queued', 'dispatched', 'running') OR id = (SELECT MAX(id) FROM missions WHERE service = $3 AND environment = $4 AND retired = 0 AND preview = '')) ORDER BY id")
            .bind(service)
            .bind(environment)
            .bind(service)
            .bind(environment)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(mission_row).collect())
    }

    /// queued → dispatched (never moves a mission backwards).
    pub async fn mark_dispatched(&self, mission_id: &str, agent_id: &str) -> Result<()> {
        sqlx::query("UPDATE missions SET state = 'dispatched', agent_id = $1, updated = $2 WHERE id = $3 AND state = 'queued'")
            .bind(agent_id)
            .bind(now_ms())
            .bind(mission_id)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    /// queued/dispatched → running, release → deploying; true if it moved.
    pub async fn mark_running(&self, mission: &MissionRow, agent_id: &str) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let moved = sqlx::query("UPDATE missions SET state = 'running', agent_id = $1, updated = $2 WHERE id = $3 AND state IN ('queued', 'dispatched')")
            .bind(agent_id)
            .bind(now_ms())
            .bind(&mission.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if moved && matches!(mission.kind, MissionKind::Deploy | MissionKind::Rollback) {
            sqlx::query(
                "UPDATE releases SET state = 'deploying' WHERE id = $1 AND state = 'pending'",
            )
            .bind(&mission.release_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Applies an agent's MissionUpdate to the mission, its release and the
    /// service's current release.
    pub async fn apply_update(
        &self,
        mission: &MissionRow,
        update: &launch_proto::MissionUpdate,
        state: MissionState,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE missions SET state = $1, message = $2, url = $3, result_release_id = $4, updated = $5 WHERE id = $6")
            .bind(state.label())
            .bind(&update.message)
            .bind(&update.url)
            .bind(&update.release_id)
            .bind(now_ms())
            .bind(&mission.id)
            .execute(&mut *tx)
            .await?;
        let release_state = match state {
            MissionState::Running => Some("deploying"),
            MissionState::Healthy => Some("healthy"),
            MissionState::Failed => Some("failed"),
            MissionState::RolledBack => Some("rolled_back"),
            // A cancelled deploy never went live.
            MissionState::Cancelled => Some("failed"),
            _ => None,
        };
        let moves_release = matches!(mission.kind, MissionKind::Deploy | MissionKind::Rollback);
        if let (Some(release_state), true) = (release_state, moves_release) {
            sqlx::query("UPDATE releases SET state = $1 WHERE id = $2")
                .bind(release_state)
                .bind(&mission.release_id)
                .execute(&mut *tx)
                .await?;
        }
        let current = match state {
            // A preview's release is never the environment's.
            _ if !mission.preview.is_empty() => None,
            MissionState::Healthy if moves_release => Some(mission.release_id.clone()),
            MissionState::RolledBack if !update.release_id.is_empty() => {
                Some(update.release_id.clone())
            }
            _ => None,
        };
        // A retired host runs nothing.
        let retired_host = state == MissionState::Healthy && mission.kind == MissionKind::Retire;
        if current.is_some() || retired_host {
            sqlx::query(
                "UPDATE services SET current_release_id = $1 WHERE service = $2 AND environment = $3",
            )
            .bind(current)
            .bind(&mission.service)
            .bind(&mission.environment)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    pub async fn mission_counts(&self) -> Result<Vec<(String, String, i64)>> {
        sqlx::query("SELECT kind, state, COUNT(*) AS n FROM missions GROUP BY kind, state ORDER BY kind, state")
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(|r| (r.get("kind"), r.get("state"), r.get("n"))).collect())
    }
}
