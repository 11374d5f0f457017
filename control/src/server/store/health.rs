//! The queries of service health: the latest report of each service's agent
//! on its current release (degraded or not), replaced on every report.

use sqlx::Row;

use super::{Result, Store, now_ms};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthRow {
    pub release_id: String,
    pub degraded: bool,
    pub message: String,
}

impl Store {
    pub async fn set_service_health(
        &self,
        service: &str,
        environment: &str,
        health: &HealthRow,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO service_health (service, environment, release_id, degraded, message, updated) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (service, environment) DO UPDATE SET release_id = excluded.release_id, degraded = excluded.degraded, message = excluded.message, updated = excluded.updated",
        )
        .bind(service)
        .bind(environment)
        .bind(&health.release_id)
        .bind(i64::from(health.degraded))
        .bind(&health.message)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn service_health(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<Option<HealthRow>> {
        let row = sqlx::query(
            "SELECT release_id, degraded, message FROM service_health WHERE service = $1 AND environment = $2",
        )
        .bind(service)
        .bind(environment)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| HealthRow {
            release_id: row.get("release_id"),
            degraded: row.get::<i64, _>("degraded") != 0,
            message: row.get("message"),
        }))
    }
}
