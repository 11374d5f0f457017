//! The queries of host-policy allowances: granted, revoked and listed per
//! (service, environment), each kept with who granted it and when.

use sqlx::Row;

use super::{Result, Store, now_ms};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowanceRow {
    pub allowance: String,
    pub granted_by: String,
    pub granted: i64,
}

impl Store {
    /// Grants each allowance (granting one again keeps its first record).
    pub async fn allow(
        &self,
        service: &str,
        environment: &str,
        allowances: &[String],
        granted_by: &str,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        for allowance in allowances {
            sqlx::query(
                "INSERT INTO service_allowances (service, environment, allowance, granted_by, granted) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (service, environment, allowance) DO NOTHING",
            )
            .bind(service)
            .bind(environment)
            .bind(allowance)
            .bind(granted_by)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Revokes each allowance; returns how many were granted.
    pub async fn disallow(
        &self,
        service: &str,
        environment: &str,
        allowances: &[String],
    ) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        let mut removed = 0;
        for allowance in allowances {
            removed += sqlx::query(
                "DELETE FROM service_allowances WHERE service = $1 AND environment = $2 AND allowance = $3",
            )
            .bind(service)
            .bind(environment)
            .bind(allowance)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(removed)
    }

    pub async fn allowances(&self, service: &str, environment: &str) -> Result<Vec<AllowanceRow>> {
        let rows = sqlx::query(
            "SELECT allowance, granted_by, granted FROM service_allowances WHERE service = $1 AND environment = $2 ORDER BY allowance",
        )
        .bind(service)
        .bind(environment)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| AllowanceRow {
                allowance: row.get("allowance"),
                granted_by: row.get("granted_by"),
                granted: row.get("granted"),
            })
            .collect())
    }
}
