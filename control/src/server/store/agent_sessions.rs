//! Whether an agent is connected, as every replica sees it. A session's
//! replica holds it in memory (the hub, for dispatch), but `launch agents`,
//! `launch services` and the dashboard may ask any replica, so "connected"
//! is read from the agent's row: the open session's id and a lease
//! (`session_until`) that each write of `last_seen` renews. The lease is
//! set and compared by the database's clock alone, in SQL, never by a
//! replica's: replicas do not agree on anything by their own clocks. A
//! replica killed without closing its sessions stops counting as holding
//! them when their leases run out; its agents have reconnected elsewhere
//! by then, which took their rows over.

use std::collections::HashMap;

use launch_proto::Hello;
use sqlx::Row;

use super::{Engine, Result, Store, now_ms};

/// How long a session counts as open after its last renewal: three of
/// `last_seen`'s writes (at most every 30 s while heartbeats arrive).
pub const LEASE_MS: i64 = 90_000;

impl Engine {
    /// The database's clock in milliseconds since the epoch, as SQL.
    pub(super) fn now_ms_sql(self) -> &'static str {
        match self {
            Engine::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Engine::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }
}

/// [`Store::host_compose`]'s query, `$1` the service and `$2` the
/// environment; the deploy's one read (`deploy_read`) uses it as is.
pub(super) const HOST_COMPOSE_SQL: &str = "SELECT compose FROM agents WHERE service = $1 AND environment = $2 AND revoked = 0 AND compose != '' ORDER BY hello_at DESC, id DESC LIMIT 1";

impl Store {
    /// A session `session_id` of the agent opened (its Hello): `last_seen`,
    /// hostname, version, the executable's sha256 and the host's compose
    /// (kept when the Hello names none) are written with the database's
    /// time of the Hello, and the agent counts as connected for
    /// [`LEASE_MS`] unless renewed.
    pub async fn open_session(
        &self,
        agent_id: &str,
        session_id: &str,
        hello: &Hello,
    ) -> Result<()> {
        let now = self.engine.now_ms_sql();
        sqlx::query(&format!(
            "UPDATE agents SET last_seen = $1, hostname = $2, version = $3, agent_sha256 = $4, session_id = $5, session_until = {now} + $6, hello_at = {now}, compose = CASE WHEN $7 = '' THEN compose ELSE $7 END WHERE id = $8"
        ))
        .bind(now_ms())
        .bind(&hello.hostname)
        .bind(&hello.version)
        .bind(&hello.agent_sha256)
        .bind(session_id)
        .bind(LEASE_MS)
        .bind(&hello.compose)
        .bind(agent_id)
        .execute(&self.writer)
        .await
        .map(drop)
    }

    /// `last_seen` written and, if `session_id` is still the agent's open
    /// session, its lease renewed; with `open == false` the session ends
    /// instead (a newer session elsewhere is left as it is). Whether
    /// `session_id` was the agent's open session.
    pub async fn touch_session(
        &self,
        agent_id: &str,
        session_id: &str,
        open: bool,
    ) -> Result<bool> {
        let now = self.engine.now_ms_sql();
        let until = match open {
            true => format!("{now} + {LEASE_MS}"),
            false => "0".to_owned(),
        };
        let current: Option<String> = sqlx::query_scalar(&format!(
            "UPDATE agents SET last_seen = $1, session_until = CASE WHEN session_id = $2 THEN {until} ELSE session_until END WHERE id = $3 RETURNING session_id"
        ))
        .bind(now_ms())
        .bind(session_id)
        .bind(agent_id)
        .fetch_optional(&self.writer)
        .await?;
        Ok(current.as_deref() == Some(session_id))
    }

    /// Ends every session: for a SQLite control plane starting, which is
    /// the only one on its database, so whatever a crash left open is not.
    pub async fn end_all_sessions(&self) -> Result<()> {
        sqlx::query("UPDATE agents SET session_until = 0 WHERE session_until != 0")
            .execute(&self.writer)
            .await
            .map(drop)
    }

    /// The condition on an `agents` row (aliased `alias`) that it is connected.
    pub(super) fn connected_sql(&self, alias: &str) -> String {
        format!(
            "{alias}.revoked = 0 AND {alias}.session_until > {}",
            self.engine.now_ms_sql()
        )
    }

    /// How many of the service's agents are connected, to any replica.
    pub async fn agents_connected(&self, service: &str, environment: &str) -> Result<usize> {
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM agents a WHERE a.service = $1 AND a.environment = $2 AND {}",
            self.connected_sql("a")
        ))
        .bind(service)
        .bind(environment)
        .fetch_one(&self.pool)
        .await?;
        Ok(count as usize)
    }

    /// The compose the service's host runs, e.g. `docker-compose 1.29.2`:
    /// what the Hello of its agent (not revoked) that said one last named.
    pub async fn host_compose(&self, service: &str, environment: &str) -> Result<Option<String>> {
        sqlx::query_scalar(HOST_COMPOSE_SQL)
            .bind(service)
            .bind(environment)
            .fetch_optional(&self.pool)
            .await
    }

    /// [`Store::host_compose`] of every service that has one.
    pub async fn host_composes(&self) -> Result<HashMap<(String, String), String>> {
        // Oldest Hello first, so each service keeps its newest.
        let rows = sqlx::query(
            "SELECT service, environment, compose FROM agents WHERE revoked = 0 AND compose != '' ORDER BY hello_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let key = (row.get("service"), row.get("environment"));
                (key, row.get("compose"))
            })
            .collect())
    }

    /// The ids of the agents connected to any replica.
    pub async fn connected_agents(&self) -> Result<std::collections::HashSet<String>> {
        sqlx::query_scalar(&format!(
            "SELECT a.id FROM agents a WHERE {}",
            self.connected_sql("a")
        ))
        .fetch_all(&self.pool)
        .await
        .map(|ids: Vec<String>| ids.into_iter().collect())
    }
}

/// Ends its session's lease when dropped: a session's stream is dropped
/// mid-`await` when its agent goes (nothing after the session's loop runs
/// then), so the close is written from here, by a task of its own, which
/// then calls `ended` if the session was still the agent's open one (not
/// replaced by a newer session): the agent has left, as every replica's
/// store now says.
pub struct SessionLease {
    store: Store,
    agent_id: String,
    session_id: String,
    ended: Option<Box<dyn FnOnce() + Send>>,
}

impl SessionLease {
    /// The lease of session `session_id`, opened by [`Store::open_session`].
    pub fn new(
        store: Store,
        agent_id: String,
        session_id: String,
        ended: impl FnOnce() + Send + 'static,
    ) -> SessionLease {
        SessionLease {
            store,
            agent_id,
            session_id,
            ended: Some(Box::new(ended)),
        }
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // Shutting down: the lease runs out by itself.
        };
        let (store, agent_id, session_id, ended) = (
            self.store.clone(),
            std::mem::take(&mut self.agent_id),
            std::mem::take(&mut self.session_id),
            self.ended.take(),
        );
        runtime.spawn(async move {
            match store.touch_session(&agent_id, &session_id, false).await {
                Ok(true) => {
                    if let Some(ended) = ended {
                        ended();
                    }
                }
                Ok(false) => {} // A newer session holds the agent.
                Err(err) => {
                    tracing::warn!(agent_id = %agent_id, cause = %err, "cannot record the end of an agent's session: it counts as connected until its lease runs out");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on each engine (SQLite in a temp dir, a database of this
    /// process's throwaway PostgreSQL cluster), with an agent `a1` of
    /// `web/prod` registered and its directory kept alive.
    async fn engines() -> Vec<(tempfile::TempDir, Store)> {
        let stores = super::super::test_engines::stores("sessions", "").await;
        for (_, store) in &stores {
            sqlx::query("INSERT INTO agents (id, service, environment, labels, hostname, version, token_hash, registered, last_seen) VALUES ('a1', 'web', 'prod', '{}', 'h', 'v', 'x', 0, 0)")
                .execute(&store.writer)
                .await
                .unwrap();
        }
        stores
    }

    fn hello(sha256: &str) -> Hello {
        Hello {
            hostname: "host-1".into(),
            version: "1.2.3".into(),
            agent_sha256: sha256.into(),
            ..Hello::default()
        }
    }

    async fn connected(store: &Store) -> (bool, usize) {
        (
            store.connected_agents().await.unwrap().contains("a1"),
            store.agents_connected("web", "prod").await.unwrap(),
        )
    }

    #[tokio::test]
    async fn a_session_counts_as_connected_until_it_closes_and_an_old_close_leaves_a_new_one() {
        for (_dir, store) in engines().await {
            let engine = store.engine().name();
            assert_eq!(
                connected(&store).await,
                (false, 0),
                "{engine}: registered only"
            );
            store.open_session("a1", "s1", &hello("aaa")).await.unwrap();
            assert_eq!(connected(&store).await, (true, 1), "{engine}: open");
            let row = store.agents().await.unwrap().remove(0);
            assert_eq!(
                (row.hostname.as_str(), row.agent_sha256.as_str()),
                ("host-1", "aaa")
            );

            // The agent reconnected (to another replica, say) before its
            // old session's close was written.
            store.open_session("a1", "s2", &hello("bbb")).await.unwrap();
            store.touch_session("a1", "s1", false).await.unwrap();
            assert_eq!(
                connected(&store).await,
                (true, 1),
                "{engine}: s1 closed, s2 open"
            );
            store.touch_session("a1", "s1", true).await.unwrap();
            store.touch_session("a1", "s2", false).await.unwrap();
            assert_eq!(connected(&store).await, (false, 0), "{engine}: s2 closed");
        }
    }

    #[tokio::test]
    async fn a_session_whose_lease_ran_out_is_not_connected_until_renewed() {
        for (_dir, store) in engines().await {
            let engine = store.engine().name();
            store.open_session("a1", "s1", &hello("aaa")).await.unwrap();
            // The replica holding it stopped renewing: the lease is past, by
            // the database's clock.
            let now = store.engine.now_ms_sql();
            sqlx::query(&format!("UPDATE agents SET session_until = {now} - 1"))
                .execute(&store.writer)
                .await
                .unwrap();
            assert_eq!(connected(&store).await, (false, 0), "{engine}: lease past");
            store.touch_session("a1", "s1", true).await.unwrap();
            assert_eq!(connected(&store).await, (true, 1), "{engine}: renewed");

            store.end_all_sessions().await.unwrap();
            assert_eq!(connected(&store).await, (false, 0), "{engine}: all ended");
            store.touch_session("a1", "s1", true).await.unwrap();
            assert_eq!(
                connected(&store).await,
                (true, 1),
                "{engine}: renewed again"
            );
            assert!(store.revoke_agent("a1").await.unwrap());
            assert_eq!(connected(&store).await, (false, 0), "{engine}: revoked");
        }
    }

    #[tokio::test]
    async fn the_hosts_compose_is_the_one_the_newest_hello_named() {
        for (_dir, store) in engines().await {
            let engine = store.engine().name();
            sqlx::query("INSERT INTO agents (id, service, environment, labels, hostname, version, token_hash, registered, last_seen) VALUES ('a2', 'web', 'prod', '{}', 'h', 'v', 'y', 0, 0)")
                .execute(&store.writer)
                .await
                .unwrap();
            let said = |compose: &str| Hello {
                compose: compose.into(),
                ..hello("aaa")
            };
            let both = |store: Store| async move {
                let one = store.host_compose("web", "prod").await.unwrap();
                let all = store.host_composes().await.unwrap();
                assert_eq!(
                    all.get(&("web".to_owned(), "prod".to_owned())),
                    one.as_ref(),
                    "the listing's answer is the per-service one"
                );
                one
            };
            assert_eq!(both(store.clone()).await, None, "{engine}: no Hello yet");
            store
                .open_session("a1", "s1", &said("docker-compose 1.29.2"))
                .await
                .unwrap();
            assert_eq!(
                both(store.clone()).await.as_deref(),
                Some("docker-compose 1.29.2"),
                "{engine}: a1 said"
            );
            // A Hello that names no compose leaves what the agent said before.
            store.open_session("a1", "s2", &said("")).await.unwrap();
            assert_eq!(
                both(store.clone()).await.as_deref(),
                Some("docker-compose 1.29.2"),
                "{engine}: a1 said nothing new"
            );
            // A newer host of the service said hello after it (by the
            // database's clock, which moves on between the two).
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            store
                .open_session("a2", "s3", &said("docker compose 2.29.1"))
                .await
                .unwrap();
            assert_eq!(
                both(store.clone()).await.as_deref(),
                Some("docker compose 2.29.1"),
                "{engine}: a2 said last"
            );
            assert!(store.revoke_agent("a2").await.unwrap());
            assert_eq!(
                both(store.clone()).await.as_deref(),
                Some("docker-compose 1.29.2"),
                "{engine}: a2 revoked"
            );
        }
    }

    #[tokio::test]
    async fn a_dropped_lease_ends_its_session_then_says_so_unless_a_newer_one_holds_the_agent() {
        /// A lease of `session_id` and what its `ended` says.
        fn lease(
            store: &Store,
            session_id: &str,
        ) -> (SessionLease, tokio::sync::oneshot::Receiver<()>) {
            let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
            let lease =
                SessionLease::new(store.clone(), "a1".into(), session_id.into(), move || {
                    let _ = ended_tx.send(());
                });
            (lease, ended_rx)
        }
        let deadline = std::time::Duration::from_secs(10);
        for (_dir, store) in engines().await {
            let engine = store.engine().name();
            store.open_session("a1", "s1", &hello("aaa")).await.unwrap();
            let (held, ended) = lease(&store, "s1");
            assert_eq!(connected(&store).await, (true, 1), "{engine}: held");
            drop(held);
            tokio::time::timeout(deadline, ended)
                .await
                .unwrap_or_else(|_| panic!("{engine}: the dropped lease never said it ended"))
                .expect("ended is called, not dropped");
            // Said once written: every replica's answer agrees at once.
            assert_eq!(connected(&store).await, (false, 0), "{engine}: ended");

            // A lease whose agent reconnected (s3) ends nothing and says nothing.
            store.open_session("a1", "s2", &hello("aaa")).await.unwrap();
            let (replaced, ended) = lease(&store, "s2");
            store.open_session("a1", "s3", &hello("aaa")).await.unwrap();
            drop(replaced);
            let said = tokio::time::timeout(deadline, ended)
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{engine}: the replaced lease's task neither ended nor dropped its callback"
                    )
                });
            assert!(said.is_err(), "{engine}: a replaced session said it ended");
            assert_eq!(
                connected(&store).await,
                (true, 1),
                "{engine}: s3 still open"
            );
        }
    }
}
