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

pub type Result<T> = std::result::Result<T, sqlx::Error>;

mod agents;
mod api_tokens;
mod batch;
mod deploy_read;
mod deploy_writer;
mod log_lines;
mod missions;
mod provisioning;
mod secrets;
pub use agents::{AgentRow, JoinTokenRow};
pub use api_tokens::{ApiTokenRow, NewApiToken};
pub use deploy_read::DeployRead;
pub use missions::{MissionRow, NewDeploy, RecordedDeploy, ReleaseRow};
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
    /// SQLite's group commit of concurrent deploys (`None` on PostgreSQL).
    deploy_writer: Option<deploy_writer::DeployWriter>,
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

/// What retiring a service revoked and cancelled.
#[derive(Clone, Debug)]
pub struct Retired {
    pub agents: Vec<String>,
    pub join_tokens: u64,
    pub cancelled_missions: Vec<String>,
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
        let deploy_writer =
            (engine == Engine::Sqlite).then(|| deploy_writer::DeployWriter::start(writer.clone()));
        Ok(Store {
            pool,
            writer,
            engine,
            listen_url,
            deploy_writer,
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Transactions that recorded several concurrent deploys at once so
    /// far (SQLite's group commit); `None` on PostgreSQL.
    pub fn deploy_groups(&self) -> Option<u64> {
        self.deploy_writer.as_ref().map(|writer| writer.groups())
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
