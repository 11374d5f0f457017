//! What a deploy reads before it writes, in one query: the environment's
//! secrets, a preview's overrides, the compose the service's host last said
//! it runs, and the service's allowances. As four queries they were four
//! pooled connections and, on SQLite, four hand-offs to connection threads
//! and back (a round trip each on PostgreSQL); as one `UNION ALL`, tagged by
//! a `part` column, they are one of each. The parts' rows are the same as
//! those of `Store::secrets`, `Store::host_compose` and `Store::allowances`,
//! which a test holds them to.

use std::sync::LazyLock;

use sqlx::Row;

use super::agent_sessions::HOST_COMPOSE_SQL;
use super::{Result, SecretRow, Store};

/// What [`Store::read_for_deploy`] found.
#[derive(Debug, Default)]
pub struct DeployRead {
    /// The environment's secrets, by key.
    pub secrets: Vec<SecretRow>,
    /// A preview's overrides (stored under `environment@preview`), by key;
    /// none for the environment itself.
    pub overrides: Vec<SecretRow>,
    /// What the service's newest unrevoked agent said it runs, if it did.
    pub host_compose: Option<String>,
    /// The service's allowances, by name.
    pub allowances: Vec<String>,
}

/// The `part` of each row, in the order the parts are read.
const SECRET: i64 = 0;
const OVERRIDE: i64 = 1;
const HOST_COMPOSE: i64 = 2;
const ALLOWANCE: i64 = 3;

/// `$1` the service, `$2` the environment, `$3` where the deploy's own
/// secrets go; the host's compose is [`HOST_COMPOSE_SQL`] itself.
static QUERY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT CAST(0 AS BIGINT) AS part, key AS text, nonce, ciphertext, updated FROM secrets WHERE service = $1 AND environment = $2 \
UNION ALL SELECT CAST(1 AS BIGINT), key, nonce, ciphertext, updated FROM secrets WHERE service = $1 AND environment = $3 AND environment <> $2 \
UNION ALL SELECT CAST(2 AS BIGINT), compose, NULL, NULL, CAST(0 AS BIGINT) FROM ({HOST_COMPOSE_SQL}) AS newest \
UNION ALL SELECT CAST(3 AS BIGINT), allowance, NULL, NULL, granted FROM service_allowances WHERE service = $1 AND environment = $2 \
ORDER BY part, text"
    )
});

impl Store {
    /// What the deploy of `service` to `environment` needs to read, with
    /// `secrets_environment` where its own secrets go (the environment, or
    /// a preview's `environment@preview`): see the module's comment.
    pub async fn read_for_deploy(
        &self,
        service: &str,
        environment: &str,
        secrets_environment: &str,
    ) -> Result<DeployRead> {
        let rows = sqlx::query(&QUERY)
            .bind(service)
            .bind(environment)
            .bind(secrets_environment)
            .fetch_all(&self.pool)
            .await?;
        let mut read = DeployRead::default();
        for row in &rows {
            let secret = || SecretRow {
                key: row.get("text"),
                nonce: row.get("nonce"),
                ciphertext: row.get("ciphertext"),
                updated: row.get("updated"),
            };
            match row.get::<i64, _>("part") {
                SECRET => read.secrets.push(secret()),
                OVERRIDE => read.overrides.push(secret()),
                HOST_COMPOSE => read.host_compose = Some(row.get("text")),
                ALLOWANCE => read.allowances.push(row.get("text")),
                other => {
                    return Err(sqlx::Error::Protocol(format!(
                        "the deploy's read returned a row of part {other}"
                    )));
                }
            }
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_engines::stores;

    #[tokio::test]
    async fn the_deploy_read_finds_what_the_separate_reads_find_on_both_engines() {
        for (_dir, store) in stores("deploy_read", "").await {
            let engine = store.engine();
            // Positive controls: a service with every part, and a preview.
            for (environment, key) in [
                ("prod", "B_KEY"),
                ("prod", "A_KEY"),
                ("prod@pr-7", "A_KEY"),
                ("staging", "OTHER"),
            ] {
                store
                    .put_secret("web", environment, key, b"nonce", key.as_bytes())
                    .await
                    .unwrap();
            }
            store
                .allow(
                    "web",
                    "prod",
                    &["docker-socket".to_owned(), "bind-mounts".to_owned()],
                    "tester",
                )
                .await
                .unwrap();
            // Two agents: the newer Hello's compose is the host's.
            for (id, hello_at, compose) in [
                ("a1", 1, "docker-compose 1.29.2"),
                ("a2", 2, "docker compose 2.29.1"),
            ] {
                sqlx::query("INSERT INTO agents (id, service, environment, labels, hostname, version, token_hash, registered, last_seen, hello_at, compose) VALUES ($1, 'web', 'prod', '{}', 'h', 'v', $2, 0, 0, $3, $4)")
                    .bind(id)
                    .bind(id)
                    .bind(hello_at as i64)
                    .bind(compose)
                    .execute(&store.writer)
                    .await
                    .unwrap();
            }

            let read = store.read_for_deploy("web", "prod", "prod").await.unwrap();
            let keys = |rows: &[super::SecretRow]| -> Vec<String> {
                rows.iter().map(|r| r.key.clone()).collect()
            };
            let separate = store.secrets("web", "prod").await.unwrap();
            assert_eq!(keys(&read.secrets), keys(&separate), "{engine:?}");
            assert_eq!(keys(&read.secrets), ["A_KEY", "B_KEY"], "{engine:?}");
            assert_eq!(read.secrets[1].ciphertext, b"B_KEY", "{engine:?}");
            assert_eq!(read.secrets[1].nonce, b"nonce", "{engine:?}");
            assert_eq!(read.secrets[1].updated, separate[1].updated, "{engine:?}");
            assert!(
                read.overrides.is_empty(),
                "{engine:?}: no preview, no overrides"
            );
            assert_eq!(
                read.host_compose,
                store.host_compose("web", "prod").await.unwrap(),
                "{engine:?}"
            );
            assert_eq!(
                read.host_compose.as_deref(),
                Some("docker compose 2.29.1"),
                "{engine:?}"
            );
            let allowances: Vec<String> = store
                .allowances("web", "prod")
                .await
                .unwrap()
                .into_iter()
                .map(|row| row.allowance)
                .collect();
            assert_eq!(read.allowances, allowances, "{engine:?}");
            assert_eq!(read.allowances.len(), 2, "{engine:?}");

            let preview = store
                .read_for_deploy("web", "prod", "prod@pr-7")
                .await
                .unwrap();
            assert_eq!(keys(&preview.secrets), ["A_KEY", "B_KEY"], "{engine:?}");
            assert_eq!(keys(&preview.overrides), ["A_KEY"], "{engine:?}");

            let nothing = store.read_for_deploy("api", "prod", "prod").await.unwrap();
            assert!(
                nothing.secrets.is_empty() && nothing.allowances.is_empty(),
                "{engine:?}"
            );
            assert_eq!(nothing.host_compose, None, "{engine:?}");
        }
    }
}
