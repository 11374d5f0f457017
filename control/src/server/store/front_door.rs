//! The queries of the agents' front doors: the latest route report of each
//! agent (the newest of a service's live agents is what `status` shows), and
//! the proxy counters: totals per route, and each agent's marks (what its
//! counters stood at under its epoch), written in one transaction so a total
//! never counts a report twice.

use sqlx::Row;

use super::{Result, Store};
use crate::server::front_door::{Growth, Marks};

impl Store {
    /// Replaces `agent_id`'s route report (prost bytes).
    pub async fn set_front_door_routes(
        &self,
        agent_id: &str,
        service: &str,
        environment: &str,
        report: &[u8],
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO front_door_routes (agent_id, service, environment, report, seq)
             VALUES ($1, $2, $3, $4, (SELECT COALESCE(MAX(seq), 0) + 1 FROM front_door_routes))
             ON CONFLICT (agent_id) DO UPDATE SET service = excluded.service, environment = excluded.environment, report = excluded.report, seq = excluded.seq",
        )
        .bind(agent_id)
        .bind(service)
        .bind(environment)
        .bind(report)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The newest route report of the service's agents that are not revoked.
    pub async fn front_door_routes(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query(
            "SELECT f.report FROM front_door_routes f JOIN agents a ON a.id = f.agent_id
             WHERE f.service = $1 AND f.environment = $2 AND a.revoked = 0
             ORDER BY f.seq DESC LIMIT 1",
        )
        .bind(service)
        .bind(environment)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.get("report")))
    }

    /// The epoch and marks stored for `agent_id`, if any.
    pub async fn proxy_counter_marks(&self, agent_id: &str) -> Result<Option<(String, Marks)>> {
        let row = sqlx::query("SELECT epoch, marks FROM proxy_counter_marks WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| {
            let marks: String = row.get("marks");
            (
                row.get("epoch"),
                serde_json::from_str(&marks).unwrap_or_default(),
            )
        }))
    }

    /// Adds `growth` to the service's totals and records `marks` under
    /// `epoch` as `agent_id`'s, in one transaction.
    pub async fn add_proxy_counters(
        &self,
        agent_id: &str,
        service: &str,
        environment: &str,
        epoch: &str,
        marks: &Marks,
        growth: &[Growth],
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO proxy_counter_marks (agent_id, epoch, marks) VALUES ($1, $2, $3)
             ON CONFLICT (agent_id) DO UPDATE SET epoch = excluded.epoch, marks = excluded.marks",
        )
        .bind(agent_id)
        .bind(epoch)
        .bind(serde_json::to_string(marks).expect("plain map"))
        .execute(&mut *tx)
        .await?;
        for grown in growth {
            sqlx::query(
                "INSERT INTO proxy_counters (service, environment, route, series, value) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (service, environment, route, series) DO UPDATE SET value = proxy_counters.value + excluded.value",
            )
            .bind(service)
            .bind(environment)
            .bind(&grown.route)
            .bind(&grown.series)
            .bind(i64::try_from(grown.by).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Every total: (service, environment, route, series, value), sorted.
    pub async fn proxy_counters(&self) -> Result<Vec<(String, String, String, String, u64)>> {
        let rows = sqlx::query(
            "SELECT service, environment, route, series, value FROM proxy_counters
             ORDER BY service, environment, route, series",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get("service"),
                    row.get("environment"),
                    row.get("route"),
                    row.get("series"),
                    u64::try_from(row.get::<i64, _>("value")).unwrap_or_default(),
                )
            })
            .collect())
    }
}
