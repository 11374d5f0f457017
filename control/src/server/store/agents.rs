//! The queries of join tokens and of the agents that registered with them.
//! A join token is minted for one service and environment and used once:
//! `register_agent` uses it and records the agent in one transaction. An
//! agent is found by the hash of its token, listed and revoked; its
//! sessions, and whether it is connected, are `agent_sessions`.

use sqlx::Row;

use super::{Result, Store, now_ms};

#[derive(Clone, Debug)]
pub struct AgentRow {
    pub id: String,
    pub service: String,
    pub environment: String,
    pub labels: String,
    pub hostname: String,
    pub version: String,
    pub revoked: bool,
    pub registered: i64,
    pub last_seen: i64,
    /// What its newest session's Hello said of its executable.
    pub agent_sha256: String,
}

#[derive(Clone, Debug)]
pub struct JoinTokenRow {
    pub id: String,
    pub service: String,
    pub environment: String,
    pub expires: i64,
    pub used_at: Option<i64>,
    pub revoked: bool,
}

fn agent_row(row: &sqlx::any::AnyRow) -> AgentRow {
    AgentRow {
        id: row.get("id"),
        service: row.get("service"),
        environment: row.get("environment"),
        labels: row.get("labels"),
        hostname: row.get("hostname"),
        version: row.get("version"),
        revoked: row.get::<i64, _>("revoked") != 0,
        registered: row.get("registered"),
        last_seen: row.get("last_seen"),
        agent_sha256: row.get("agent_sha256"),
    }
}

impl Store {
    pub async fn insert_join_token(
        &self,
        id: &str,
        hash: &str,
        service: &str,
        environment: &str,
        expires: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO join_tokens (id, hash, service, environment, created, expires) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(hash)
            .bind(service)
            .bind(environment)
            .bind(now_ms())
            .bind(expires)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    pub async fn join_token_by_hash(&self, hash: &str) -> Result<Option<JoinTokenRow>> {
        sqlx::query("SELECT * FROM join_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map(|row| {
                row.map(|r| JoinTokenRow {
                    id: r.get("id"),
                    service: r.get("service"),
                    environment: r.get("environment"),
                    expires: r.get("expires"),
                    used_at: r.get("used_at"),
                    revoked: r.get::<i64, _>("revoked") != 0,
                })
            })
    }

    /// Returns false when the token is unknown.
    pub async fn revoke_join_token(&self, id: &str) -> Result<bool> {
        sqlx::query("UPDATE join_tokens SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected() > 0)
    }

    /// Uses the join token and records the agent, atomically; `false` when
    /// the token was used by someone else in between.
    pub async fn register_agent(
        &self,
        join_token_id: &str,
        agent: &AgentRow,
        token_hash: &str,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let used = sqlx::query("UPDATE join_tokens SET used_at = $1, used_by_agent = $2 WHERE id = $3 AND used_at IS NULL AND revoked = 0")
            .bind(agent.registered)
            .bind(&agent.id)
            .bind(join_token_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if used == 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO agents (id, service, environment, labels, hostname, version, token_hash, registered, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&agent.id)
            .bind(&agent.service)
            .bind(&agent.environment)
            .bind(&agent.labels)
            .bind(&agent.hostname)
            .bind(&agent.version)
            .bind(token_hash)
            .bind(agent.registered)
            .bind(agent.last_seen)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE services SET note = '' WHERE service = $1 AND environment = $2")
            .bind(&agent.service)
            .bind(&agent.environment)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn agent_by_token_hash(&self, hash: &str) -> Result<Option<AgentRow>> {
        sqlx::query("SELECT * FROM agents WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.as_ref().map(agent_row))
    }

    pub async fn agent(&self, id: &str) -> Result<Option<AgentRow>> {
        sqlx::query("SELECT * FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.as_ref().map(agent_row))
    }

    pub async fn agents(&self) -> Result<Vec<AgentRow>> {
        sqlx::query("SELECT * FROM agents ORDER BY registered, id")
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(agent_row).collect())
    }

    /// Returns false when the agent is unknown.
    pub async fn revoke_agent(&self, id: &str) -> Result<bool> {
        sqlx::query("UPDATE agents SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected() > 0)
    }
}
