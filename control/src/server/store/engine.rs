//! What differs between the two engines the store runs on, kept to the few
//! things SQL written once cannot say: which engine a URL names, the pool
//! size, the per-connection set-up (SQLite's WAL, busy timeout and foreign
//! keys), the refusal of a schema newer than this binary, and the
//! placeholders of a multi-row INSERT (numbered on PostgreSQL, plain `?` on
//! SQLite, where numbered ones cost a list walk per parameter).

use std::fmt::Write;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Connection, Executor};

/// The PostgreSQL advisory lock every running replica holds shared and
/// `rotate-key` takes exclusively (sqlx's migration lock uses another key).
pub(super) const REPLICA_LOCK_KEY: i64 = 0x6c61_756e_6368_0001;

/// The database behind a [`super::Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a database URL names, `None` for any other scheme.
    pub fn of_url(url: &str) -> Option<Engine> {
        if url.starts_with("sqlite:") {
            Some(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Engine::Postgres)
        } else {
            None
        }
    }

    /// Connections when `--database-pool-size` is not given. SQLite has one
    /// writer whatever the pool; PostgreSQL's default `max_connections` is
    /// 100, shared by every replica.
    pub fn default_pool_size(self) -> u32 {
        match self {
            Engine::Sqlite => 8,
            Engine::Postgres => 10,
        }
    }

    fn connection_setup(self) -> &'static [&'static str] {
        match self {
            // WAL: readers never wait for the writer; NORMAL is durable in
            // WAL mode up to the last checkpoint-free commit; a writer
            // waits up to 10 s for another instead of failing at once.
            Engine::Sqlite => &[
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = NORMAL",
                "PRAGMA busy_timeout = 10000",
                "PRAGMA foreign_keys = ON",
            ],
            Engine::Postgres => &[],
        }
    }

    /// The aggregate that joins a group's strings with a separator:
    /// `{agg}(text, separator)`.
    pub(super) fn string_agg(self) -> &'static str {
        match self {
            Engine::Sqlite => "group_concat",
            Engine::Postgres => "string_agg",
        }
    }

    /// What follows a text column to compare it in byte order (UTF-8
    /// code point order), as a range of an index on `column COLLATE "C"`
    /// must: SQLite's default; on PostgreSQL the `C` collation, since the
    /// database's may sort otherwise.
    pub(super) fn byte_order(self) -> &'static str {
        match self {
            Engine::Sqlite => "",
            Engine::Postgres => " COLLATE \"C\"",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
        }
    }
}

/// A pool of up to `size` connections set up for `engine`. A connection is
/// pinged before use only when [`Engine::ping_when_idle`] says so.
pub(super) fn pool_options(engine: Engine, size: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(size)
        // A database that is away fails a call within this (as
        // `Unavailable`, see `state::internal`) instead of sqlx's 30 s.
        .acquire_timeout(std::time::Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                for statement in engine.connection_setup() {
                    conn.execute(*statement).await?;
                }
                Ok(())
            })
        })
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= engine.ping_when_idle() {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

impl Engine {
    /// How long a pooled connection may sit idle before it is pinged on its
    /// next use (a broken one is then closed and another taken, instead of
    /// failing a query). SQLite's file connections do not break, so a ping
    /// per acquire would only double the round trips of every query. A
    /// PostgreSQL connection breaks with its server: after a restart every
    /// pooled one is dead, and without a ping each would fail one call
    /// (red: `replicas_carry_on_after_postgresql_restarts…`). A restart —
    /// stop, recovery, start — takes longer than 100 ms, so a connection
    /// that answered within that has not been through one; skipping its
    /// ping saves a deploy two of its round trips under load. (One whose
    /// server died inside those 100 ms fails its call as `Unavailable`, as
    /// any call during the outage does.)
    fn ping_when_idle(self) -> std::time::Duration {
        match self {
            Engine::Sqlite => std::time::Duration::from_secs(10),
            Engine::Postgres => std::time::Duration::from_millis(100),
        }
    }
}

/// Why `url` cannot be a `--database-url`, said as the rest of a sentence
/// that starts with the flag and the URL.
pub fn check_url(url: &str) -> Result<(), String> {
    match Engine::of_url(url) {
        Some(Engine::Sqlite) => Ok(()),
        Some(Engine::Postgres) => {
            <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(url)
                .map(drop)
                .map_err(|err| {
                    format!("is not a PostgreSQL URL sqlx accepts ({err}): write postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=verify-full")
                })
        }
        None => Err(
            "is neither sqlite://PATH nor postgres://…: use one of them, or leave it unset for SQLite in the data dir"
                .to_owned(),
        ),
    }
}

/// `url` with its password (in the user info or a `password=` parameter)
/// replaced by `***`, for logs and error messages.
pub fn redacted_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..]
            .find(['/', '?'])
            .map_or(out.len(), |at| rest + at);
        if let Some(at) = out[rest..authority_end].rfind('@')
            && let Some(colon) = out[rest..rest + at].find(':')
        {
            out.replace_range(rest + colon + 1..rest + at, "***");
        }
    }
    if let Some(query) = out.find('?') {
        let (head, params) = out.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

/// Whether `err` says the database cannot be reached now (down, restarting,
/// no connection within the pool's timeout) rather than that a query is
/// wrong: callers may try again once it is back.
pub fn is_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (the
        // server shutting down, crashed, not accepting connections yet).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
        _ => false,
    }
}

/// The error for a database that holds migrations this binary does not
/// know: a newer `launch server` migrated it.
pub(super) async fn schema_too_new(pool: &AnyPool, migrator: &Migrator) -> sqlx::Error {
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
        .unwrap_or(None);
    let applied = applied.map_or_else(|| "unknown".to_owned(), |v| v.to_string());
    sqlx::Error::Configuration(
        format!(
            "the database schema is at version {applied}, newer than this launch server knows (up to {known}): \
             a newer launch server migrated it. Run that version (or a newer one) on every replica, \
             or restore the database from a backup taken before the upgrade"
        )
        .into(),
    )
}

/// An exclusive `flock` on `<database>.migrate-lock`, waited for; released
/// when the file is dropped.
pub(super) async fn lock_beside(database: &std::path::Path) -> sqlx::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let mut path = database.as_os_str().to_owned();
    path.push(".migrate-lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        // SAFETY: flock on a descriptor this closure owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(file)
    })
    .await
    .map_err(|err| sqlx::Error::Io(std::io::Error::other(err)))?
    .map_err(sqlx::Error::Io)
}

/// `head VALUES (…), (…), … tail` for `rows` rows of `columns` values. On
/// PostgreSQL the placeholders are numbered (`$1`, `$2`, …); on SQLite they
/// are plain `?`: SQLite keeps named and numbered parameters in a list that
/// sqlx walks once per parameter to bind it, so a 600-parameter `$N` insert
/// spent more CPU finding its parameters than storing its rows.
pub(super) fn multi_row_insert(
    engine: Engine,
    head: &str,
    columns: usize,
    rows: usize,
    tail: &str,
) -> String {
    let mut sql = format!("{head} VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            let separator = if column == 0 { "" } else { ", " };
            match engine {
                Engine::Sqlite => {
                    let _ = write!(sql, "{separator}?");
                }
                Engine::Postgres => {
                    let _ = write!(sql, "{separator}${}", row * columns + column + 1);
                }
            }
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// The file names one migration set has and the other lacks, as
/// `"<file> is in <dir> only"`: empty when every SQLite migration has its
/// PostgreSQL twin and none is left over.
#[cfg(test)]
pub(super) fn unpaired_migrations(
    sqlite: &std::path::Path,
    postgres: &std::path::Path,
) -> Vec<String> {
    let names = |dir: &std::path::Path| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect()
    };
    let (left, right) = (names(sqlite), names(postgres));
    let only = |mine: &std::collections::BTreeSet<String>,
                theirs: &std::collections::BTreeSet<String>,
                dir: &std::path::Path| {
        mine.difference(theirs)
            .map(|name| format!("{name} is in {} only", dir.display()))
            .collect::<Vec<_>>()
    };
    let mut out = only(&left, &right, sqlite);
    out.extend(only(&right, &left, postgres));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sqlite_migration_has_a_postgres_twin_of_the_same_name() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (sqlite, postgres) = (root.join("migrations"), root.join("migrations-postgres"));
        let unpaired = unpaired_migrations(&sqlite, &postgres);
        assert!(
            unpaired.is_empty(),
            "{unpaired:#?}: write the twin (portable SQL; BIGINT for INTEGER, BYTEA for BLOB) under the same name"
        );
        // Positive control: a migration planted in a copy of one set only,
        // and one renamed, are both reported.
        let planted = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&sqlite).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), planted.path().join(entry.file_name())).unwrap();
        }
        std::fs::write(planted.path().join("0099_planted.sql"), "SELECT 1;").unwrap();
        let found = unpaired_migrations(planted.path(), &postgres);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("0099_planted.sql is in"), "{found:?}");
        std::fs::rename(
            planted.path().join("0001_initial.sql"),
            planted.path().join("0001_first.sql"),
        )
        .unwrap();
        assert_eq!(unpaired_migrations(planted.path(), &postgres).len(), 3);
    }

    #[test]
    fn a_multi_row_insert_has_one_placeholder_per_value_in_the_engines_style() {
        assert_eq!(
            multi_row_insert(
                Engine::Postgres,
                "INSERT INTO t (a, b)",
                2,
                3,
                "ON CONFLICT DO NOTHING"
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            multi_row_insert(
                Engine::Sqlite,
                "INSERT INTO t (a, b)",
                2,
                3,
                "ON CONFLICT DO NOTHING"
            ),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn passwords_never_leave_a_redacted_url() {
        for (url, want) in [
            (
                "postgres://launch:hunter2@db:5432/launch?sslmode=require",
                "postgres://launch:***@db:5432/launch?sslmode=require",
            ),
            (
                "postgres://db/launch?user=launch&password=hunter2",
                "postgres://db/launch?user=launch&password=***",
            ),
            ("postgres://launch@db/launch", "postgres://launch@db/launch"),
            (
                "sqlite:///data/what?@x:y/launch.db",
                "sqlite:///data/what?@x:y/launch.db",
            ),
        ] {
            assert_eq!(redacted_url(url), want);
        }
    }

    #[test]
    fn urls_name_their_engine() {
        assert_eq!(
            Engine::of_url("sqlite:///var/lib/launch.db"),
            Some(Engine::Sqlite)
        );
        assert_eq!(
            Engine::of_url("postgres://db/launch"),
            Some(Engine::Postgres)
        );
        assert_eq!(
            Engine::of_url("postgresql://db/launch?sslmode=verify-full"),
            Some(Engine::Postgres)
        );
        assert_eq!(Engine::of_url("mysql://db/launch"), None);
    }
}
