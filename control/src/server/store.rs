//! The control plane's durable state: one database, SQLite (WAL, busy
//! timeout; the default, in the data dir) or PostgreSQL (`--database-url
//! postgres://…`, shared by several `launch server` replicas). Every query
//! lives here, so the services above speak in rows and never in SQL, and
//! every query is written once for both engines: sqlx's `Any` driver, numbered
//! placeholders (`$1`, which SQLite accepts too), `ON CONFLICT` instead of
//! `INSERT OR …`, integers 0/1 for flags, and only i64, String, Vec<u8> and
//! their `Option`s as values. Each engine has its own embedded migrations
//! (`control/migrations`, `control/migrations-postgres`) with the same
//! versions; a test holds the two sets to the same file names. Queries are
//! runtime `sqlx::query` calls: building needs no database.

use std::str::FromStr;

use sqlx::any::AnyConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Row};

use launch_proto::{LogLine, MissionKind, MissionState, ReleaseState};

pub type Result<T> = std::result::Result<T, sqlx::Error>;

mod agents;
mod api_tokens;
mod provisioning;
mod secrets;
pub use agents::{AgentRow, JoinTokenRow};
pub use api_tokens::{ApiTokenRow, NewApiToken};
pub use secrets::SecretRow;
mod agent_sessions;
mod allowances;
mod dashboard_sessions;
pub use dashboard_sessions::DashboardSessionRow;
mod front_door;
mod health;
mod host_address;
mod listing;
mod relay;
mod search;
pub use agent_sessions::{LEASE_MS, SessionLease};
pub use allowances::AllowanceRow;
pub use health::HealthRow;
pub use listing::ServiceDetails;
pub use relay::RELAY_CHANNEL;
pub use search::SearchTerm;
pub mod github;
pub mod previews;
mod tags;
#[cfg(test)]
mod test_engines;
pub use provisioning::HostRetired;
pub use tags::{TagRow, TagSource};

mod engine;
pub use engine::{Engine, check_url, is_unreachable, redacted_url};

/// The PostgreSQL notification channel of missions waiting for an agent.
pub const MISSION_CHANNEL: &str = "launch_missions";

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Debug)]
pub struct Store {
    /// Reads (and, on PostgreSQL, writes too).
    pool: AnyPool,
    /// Every write: on SQLite a pool of its own with one connection, so
    /// writers queue here in order instead of in SQLite's busy handler,
    /// which polls with sleeps of up to 100 ms; on PostgreSQL `pool` itself.
    writer: AnyPool,
    engine: Engine,
    /// The URL, kept on PostgreSQL for the LISTEN connection.
    listen_url: Option<String>,
}

/// See [`Store::hold_replica_lock`]; released when dropped.
pub struct ReplicaLock {
    _connection: Option<sqlx::AnyConnection>,
}

#[derive(Clone, Debug)]
pub struct ServiceRow {
    pub service: String,
    pub environment: String,
    pub created: i64,
    pub note: String,
    pub retired: bool,
    pub current_release_id: Option<String>,
    /// The address the provider registered for the host (`""`: none).
    pub host_address: String,
    /// The service's public name (`""`: none).
    pub fqdn: String,
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

/// What retiring a service revoked and cancelled.
#[derive(Clone, Debug)]
pub struct Retired {
    pub agents: Vec<String>,
    pub join_tokens: u64,
    pub cancelled_missions: Vec<String>,
}

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

fn service_row(row: &sqlx::any::AnyRow) -> ServiceRow {
    ServiceRow {
        service: row.get("service"),
        environment: row.get("environment"),
        created: row.get("created"),
        note: row.get("note"),
        retired: row.get::<i64, _>("retired") != 0,
        current_release_id: row.get("current_release_id"),
        host_address: row.get("host_address"),
        fqdn: row.get("fqdn"),
    }
}

fn release_row(row: &sqlx::any::AnyRow) -> ReleaseRow {
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

fn mission_row(row: &sqlx::any::AnyRow) -> MissionRow {
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

fn log_line(row: &sqlx::any::AnyRow) -> LogLine {
    LogLine {
        seq: row.get::<i64, _>("seq") as u64,
        unix_ms: row.get("unix_ms"),
        stream: row.get::<i64, _>("stream") as i32,
        source: row.get("source"),
        text: row.get("text"),
    }
}

impl Store {
    /// Opens (creating a missing SQLite file) the database at `url` with the
    /// engine's default pool size, and migrates it.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, None).await
    }

    /// Opens the database at `url` (`sqlite://PATH` or `postgres://…`) with
    /// up to `pool_size` connections and migrates it: on PostgreSQL under
    /// sqlx's advisory lock, so replicas starting together migrate once. A
    /// schema newer than this binary's migrations is refused, naming both.
    pub async fn open_with(url: &str, pool_size: Option<u32>) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of_url(url).ok_or_else(|| {
            sqlx::Error::Configuration(
                format!("{url:?} is neither a sqlite:// nor a postgres:// URL").into(),
            )
        })?;
        // sqlx's SQLite migrator takes no lock: processes opening one new
        // file together would each create the tables. A lock file beside the
        // database serialises them, as PostgreSQL's advisory lock does.
        let mut migration_lock = None;
        let options = match engine {
            Engine::Sqlite => {
                // A plain `sqlite://PATH` is taken as a file name verbatim, so
                // data directories with spaces or '?' work; anything else is
                // parsed as a URL. The Any driver takes a URL: sqlx encodes it.
                let sqlite = match url.strip_prefix("sqlite://") {
                    Some(path) if !path.contains('?') => SqliteConnectOptions::new().filename(path),
                    _ => SqliteConnectOptions::from_str(url)?,
                };
                migration_lock = Some(engine::lock_beside(sqlite.get_filename()).await?);
                AnyConnectOptions::from_url(&sqlite.create_if_missing(true).to_url_lossy())?
            }
            Engine::Postgres => AnyConnectOptions::from_str(url)?,
        };
        let pool = engine::pool_options(engine, pool_size.unwrap_or(engine.default_pool_size()))
            .connect_with(options.clone())
            .await?;
        let migrator = match engine {
            Engine::Sqlite => &SQLITE_MIGRATOR,
            Engine::Postgres => &POSTGRES_MIGRATOR,
        };
        if let Err(err) = migrator.run(&pool).await {
            let err = match err {
                sqlx::migrate::MigrateError::VersionMissing(_) => {
                    engine::schema_too_new(&pool, migrator).await
                }
                other => sqlx::Error::Migrate(Box::new(other)),
            };
            pool.close().await;
            return Err(err);
        }
        drop(migration_lock);
        let writer = match engine {
            Engine::Sqlite => {
                engine::pool_options(engine, 1)
                    .connect_with(options)
                    .await?
            }
            Engine::Postgres => pool.clone(),
        };
        let listen_url = (engine == Engine::Postgres).then(|| url.to_owned());
        Ok(Store {
            pool,
            writer,
            engine,
            listen_url,
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Tells every replica listening ([`Store::listener`]) that
    /// `mission_id` waits for its agent. PostgreSQL only (a notification is
    /// delivered when the sending transaction commits, and may be lost: the
    /// missions table stays the truth); nothing on SQLite, one replica.
    pub async fn notify_mission(&self, mission_id: &str) -> Result<()> {
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(MISSION_CHANNEL)
                .bind(mission_id)
                .execute(&self.writer)
                .await?;
        }
        Ok(())
    }

    /// A connection listening for [`Store::notify_mission`] and
    /// [`Store::notify_relay`]; `None` on SQLite. Its `recv` reconnects by
    /// itself after a lost connection (and listens again).
    pub async fn listener(&self) -> Result<Option<sqlx::postgres::PgListener>> {
        let Some(url) = &self.listen_url else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener
            .listen_all([MISSION_CHANNEL, RELAY_CHANNEL])
            .await?;
        Ok(Some(listener))
    }

    /// Marks this process as a running replica until the lock is dropped
    /// (or the process dies). On PostgreSQL a shared advisory lock on a
    /// connection of its own, which [`Store::try_lock_replicas`] waits for no
    /// one to hold; on SQLite nothing: the data dir lock already is per
    /// database.
    pub async fn hold_replica_lock(&self) -> Result<ReplicaLock> {
        self.replica_lock("SELECT pg_advisory_lock_shared($1)")
            .await
            .map(|lock| lock.expect("waits until held"))
    }

    /// The replica lock taken exclusively, `None` while a replica runs.
    pub async fn try_lock_replicas(&self) -> Result<Option<ReplicaLock>> {
        self.replica_lock("SELECT pg_try_advisory_lock($1)").await
    }

    async fn replica_lock(&self, sql: &str) -> Result<Option<ReplicaLock>> {
        if self.engine == Engine::Sqlite {
            return Ok(Some(ReplicaLock { _connection: None }));
        }
        let mut connection = self.pool.acquire().await?.detach();
        let held = sqlx::query(sql)
            .bind(engine::REPLICA_LOCK_KEY)
            .fetch_one(&mut connection)
            .await?
            .try_get::<bool, _>(0)
            .unwrap_or(true);
        Ok(held.then_some(ReplicaLock {
            _connection: Some(connection),
        }))
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    // ---- settings ----

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.map(|r| r.get("value")))
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    /// Stores `value` under `key` unless a value is there, and returns the
    /// stored one: `value` when this call stored it. Replicas starting
    /// together agree on one value.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await?;
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await
    }

    // ---- services ----

    /// Creates the service if missing and un-retires it; returns the row
    /// ([`Store::ensure_service_created`] without whether it was created).
    pub async fn ensure_service(&self, service: &str, environment: &str) -> Result<ServiceRow> {
        self.ensure_service_created(service, environment)
            .await
            .map(|(row, _)| row)
    }

    pub async fn service(&self, service: &str, environment: &str) -> Result<Option<ServiceRow>> {
        sqlx::query("SELECT * FROM services WHERE service = $1 AND environment = $2")
            .bind(service)
            .bind(environment)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.as_ref().map(service_row))
    }

    pub async fn services(&self) -> Result<Vec<ServiceRow>> {
        sqlx::query("SELECT * FROM services WHERE retired = 0 ORDER BY service, environment")
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(service_row).collect())
    }

    /// Records the service's public name (empty: none).
    pub async fn set_fqdn(&self, service: &str, environment: &str, fqdn: &str) -> Result<()> {
        sqlx::query("UPDATE services SET fqdn = $1 WHERE service = $2 AND environment = $3")
            .bind(fqdn)
            .bind(service)
            .bind(environment)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    /// The service's public name, `""` when it has none.
    pub async fn fqdn(&self, service: &str, environment: &str) -> Result<String> {
        sqlx::query_scalar("SELECT fqdn FROM services WHERE service = $1 AND environment = $2")
            .bind(service)
            .bind(environment)
            .fetch_optional(&self.pool)
            .await
            .map(Option::unwrap_or_default)
    }

    pub async fn set_note(&self, service: &str, environment: &str, note: &str) -> Result<()> {
        sqlx::query("UPDATE services SET note = $1 WHERE service = $2 AND environment = $3")
            .bind(note)
            .bind(service)
            .bind(environment)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    /// Marks the service retired, revokes its agents and unused join tokens,
    /// cancels its unfinished missions, and ends its history: its missions and
    /// releases are kept for audit but no longer the service's (`retired = 1`).
    pub async fn retire_service(&self, service: &str, environment: &str) -> Result<Retired> {
        let mut tx = self.writer.begin().await?;
        // Writes first: a deferred transaction that reads before writing can
        // fail with SQLITE_BUSY instead of waiting for the busy timeout.
        let agents: Vec<String> = sqlx::query(
            "UPDATE agents SET revoked = 1 WHERE service = $1 AND environment = $2 AND revoked = 0 RETURNING id",
        )
        .bind(service)
        .bind(environment)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.get("id"))
        .collect();
        let tokens = sqlx::query("UPDATE join_tokens SET revoked = 1 WHERE service = $1 AND environment = $2 AND revoked = 0 AND used_at IS NULL")
            .bind(service)
            .bind(environment)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE releases SET retired = 1 WHERE service = $1 AND environment = $2")
            .bind(service)
            .bind(environment)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE services SET retired = 1, current_release_id = NULL WHERE service = $1 AND environment = $2")
            .bind(service)
            .bind(environment)
            .execute(&mut *tx)
            .await?;
        let cancelled: Vec<String> = sqlx::query("UPDATE missions SET state = 'cancelled', message = 'the service was retired', updated = $1 WHERE service = $2 AND environment = $3 AND state IN ('queued', 'dispatched', 'running') RETURNING id")
            .bind(now_ms())
            .bind(service)
            .bind(environment)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get("id"))
            .collect();
        sqlx::query("UPDATE missions SET retired = 1 WHERE service = $1 AND environment = $2")
            .bind(service)
            .bind(environment)
            .execute(&mut *tx)
            .await?;
        previews::forget_all(&mut tx, service, environment).await?;
        tags::forget_all(&mut tx, service, environment).await?;
        tx.commit().await?;
        Ok(Retired {
            agents,
            join_tokens: tokens,
            cancelled_missions: cancelled,
        })
    }

    // ---- releases and missions ----

    /// Records a deploy: service (if missing), secrets, release (pending) and
    /// mission (queued) in one transaction; returns the mission as stored.
    pub async fn record_deploy(&self, deploy: &NewDeploy) -> Result<RecordedDeploy> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let service = sqlx::query("INSERT INTO services (service, environment, created) VALUES ($1, $2, $3) ON CONFLICT (service, environment) DO UPDATE SET retired = 0 RETURNING fqdn, host_address")
            .bind(&deploy.service)
            .bind(&deploy.environment)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let secrets_environment =
            previews::secrets_environment(&deploy.environment, &deploy.preview);
        for (key, nonce, ciphertext) in &deploy.secrets {
            sqlx::query("INSERT INTO secrets (service, environment, key, nonce, ciphertext, updated) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (service, environment, key) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated = excluded.updated")
                .bind(&deploy.service)
                .bind(&secrets_environment)
                .bind(key)
                .bind(nonce)
                .bind(ciphertext)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO releases (id, service, environment, git_ref, bundle_sha256, bundle_size, state, created, mission_id, preview) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9)")
            .bind(&deploy.release_id)
            .bind(&deploy.service)
            .bind(&deploy.environment)
            .bind(&deploy.git_ref)
            .bind(&deploy.bundle_sha256)
            .bind(deploy.bundle_size)
            .bind(now)
            .bind(&deploy.mission_id)
            .bind(&deploy.preview)
            .execute(&mut *tx)
            .await?;
        let (state, agent_id) = match &deploy.dispatch_to {
            Some(agent_id) => (MissionState::Dispatched, agent_id.clone()),
            None => (MissionState::Queued, String::new()),
        };
        sqlx::query("INSERT INTO missions (id, kind, service, environment, release_id, state, created, updated, preview, agent_id) VALUES ($1, 'deploy', $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&deploy.mission_id)
            .bind(&deploy.service)
            .bind(&deploy.environment)
            .bind(&deploy.release_id)
            .bind(state.label())
            .bind(now)
            .bind(now)
            .bind(&deploy.preview)
            .bind(&agent_id)
            .execute(&mut *tx)
            .await?;
        if let Some(source) = &deploy.source {
            github::insert_release_source(&mut tx, &deploy.release_id, source).await?;
        }
        if deploy.preview.is_empty() {
            tags::replace_in(
                &mut tx,
                &deploy.service,
                &deploy.environment,
                TagSource::LaunchToml,
                &deploy.tags,
            )
            .await?;
        } else {
            previews::record_deploy(&mut tx, deploy, now).await?;
        }
        tx.commit().await?;
        let mission = MissionRow {
            id: deploy.mission_id.clone(),
            kind: MissionKind::Deploy,
            service: deploy.service.clone(),
            environment: deploy.environment.clone(),
            release_id: deploy.release_id.clone(),
            state,
            message: String::new(),
            url: String::new(),
            agent_id,
            result_release_id: String::new(),
            created: now,
            updated: now,
            preview: deploy.preview.clone(),
        };
        Ok(RecordedDeploy {
            mission,
            fqdn: service.get("fqdn"),
            host_address: service.get("host_address"),
        })
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

    // ---- logs ----

    pub async fn last_seq(&self, mission_id: &str) -> Result<u64> {
        sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM log_lines WHERE mission_id = $1")
            .bind(mission_id)
            .fetch_one(&self.pool)
            .await
            .map(|r| r.get::<i64, _>("seq") as u64)
    }

    /// Stores lines (already filtered to new seqs) in one transaction.
    pub async fn insert_lines(&self, mission_id: &str, lines: &[LogLine]) -> Result<()> {
        // One multi-row INSERT per 150 lines (6 parameters each stays under
        // SQLite's oldest limit of 999): a statement per line costs ~5x more.
        let mut tx = self.writer.begin().await?;
        for chunk in lines.chunks(150) {
            let sql = engine::multi_row_insert(
                self.engine,
                "INSERT INTO log_lines (mission_id, seq, unix_ms, stream, source, text)",
                6,
                chunk.len(),
                "ON CONFLICT (mission_id, seq) DO NOTHING",
            );
            let mut insert = sqlx::query(&sql);
            for line in chunk {
                insert = insert
                    .bind(mission_id)
                    .bind(line.seq as i64)
                    .bind(line.unix_ms)
                    .bind(line.stream as i64)
                    .bind(&line.source)
                    .bind(&line.text);
            }
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Up to `limit` stored lines with seq > `after`, in order.
    pub async fn lines_after(
        &self,
        mission_id: &str,
        after: u64,
        limit: i64,
    ) -> Result<Vec<LogLine>> {
        sqlx::query("SELECT seq, unix_ms, stream, source, text FROM log_lines WHERE mission_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(mission_id)
            .bind(after as i64)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(log_line).collect())
    }
}

#[cfg(test)]
impl Store {
    /// Records a migration this binary does not have, as a newer binary
    /// would have left it (tests only).
    pub async fn plant_migration_for_test(&self, version: i64) {
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, 'planted by a test', $2, $3, 0)")
            .bind(version)
            .bind(true)
            .bind(vec![0u8; 48])
            .execute(&self.writer)
            .await
            .expect("plant a migration");
    }
}
