//! The queries the Terraform provider's calls need so that it never has to
//! compare clocks with the control plane: whether `EnsureService` created the
//! service, which join token each agent registered with, and retiring one
//! host (its own agent and join token) without touching a replacement that
//! already serves the same service.

use std::collections::HashMap;

use sqlx::Row;

use super::{Result, ServiceRow, Store, now_ms};

/// What retiring one host did.
#[derive(Debug, PartialEq, Eq)]
pub struct HostRetired {
    /// The host's agent was live and is revoked now.
    pub agent_revoked: bool,
    /// Another live agent or a usable join token still holds the service.
    pub others_remain: bool,
}

impl Store {
    /// Creates the service if missing, or brings back a retired one; the
    /// flag is true when this call did either (so undoing it is the caller's
    /// to do), false when the service was there already.
    pub async fn ensure_service_created(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<(ServiceRow, bool)> {
        let inserted = sqlx::query(
            "INSERT INTO services (service, environment, created) VALUES ($1, $2, $3) ON CONFLICT (service, environment) DO NOTHING",
        )
        .bind(service)
        .bind(environment)
        .bind(now_ms())
        .execute(&self.writer)
        .await?
        .rows_affected();
        let revived = if inserted == 0 {
            sqlx::query(
                "UPDATE services SET retired = 0 WHERE service = $1 AND environment = $2 AND retired = 1",
            )
            .bind(service)
            .bind(environment)
            .execute(&self.writer)
            .await?
            .rows_affected()
        } else {
            0
        };
        let row = self
            .service(service, environment)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        Ok((row, inserted + revived > 0))
    }

    /// The join token each registered agent used, by agent id.
    pub async fn join_token_ids_by_agent(&self) -> Result<HashMap<String, String>> {
        let rows = sqlx::query(
            "SELECT id, used_by_agent FROM join_tokens WHERE used_by_agent IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("used_by_agent"), r.get("id")))
            .collect())
    }

    /// Revokes one host's agent and join token (either may be empty) of the
    /// service, in one transaction, and says whether anything else still
    /// holds the service: a live agent or an unused unexpired join token made
    /// after this host's (ids are time-ordered ULIDs), i.e. a replacement as
    /// `create_before_destroy` makes. Agents of hosts that vanished before
    /// this one was made hold nothing.
    pub async fn retire_host(
        &self,
        service: &str,
        environment: &str,
        agent_id: &str,
        join_token_id: &str,
    ) -> Result<HostRetired> {
        let mut tx = self.writer.begin().await?;
        let agent_revoked = sqlx::query(
            "UPDATE agents SET revoked = 1 WHERE id = $1 AND service = $2 AND environment = $3 AND revoked = 0",
        )
        .bind(agent_id)
        .bind(service)
        .bind(environment)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        sqlx::query(
            "UPDATE join_tokens SET revoked = 1 WHERE id = $1 AND service = $2 AND environment = $3 AND used_at IS NULL",
        )
        .bind(join_token_id)
        .bind(service)
        .bind(environment)
        .execute(&mut *tx)
        .await?;
        let agents: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM agents WHERE service = $1 AND environment = $2 AND revoked = 0 AND id > $3",
        )
        .bind(service)
        .bind(environment)
        .bind(agent_id)
        .fetch_one(&mut *tx)
        .await?
        .get("n");
        let tokens: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM join_tokens WHERE service = $1 AND environment = $2 AND revoked = 0 AND used_at IS NULL AND expires > $3 AND id > $4",
        )
        .bind(service)
        .bind(environment)
        .bind(now_ms())
        .bind(join_token_id)
        .fetch_one(&mut *tx)
        .await?
        .get("n");
        tx.commit().await?;
        Ok(HostRetired {
            agent_revoked,
            others_remain: agents + tokens > 0,
        })
    }
}
