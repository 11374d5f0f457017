//! The PostgreSQL notifications replicas send each other about log lines and
//! mission updates they stored (`server::relay`): one channel, a payload of
//! short text lines. The tables stay the truth; a notification only says
//! where to look. Nothing on SQLite, which has one replica.

use super::{Engine, Result, Store};

/// The channel of stored lines, updates and newest missions.
pub const RELAY_CHANNEL: &str = "launch_relay";

impl Store {
    /// Sends `payload` to every replica listening on [`RELAY_CHANNEL`]
    /// (PostgreSQL only; at most 8000 bytes, PostgreSQL's limit).
    pub async fn notify_relay(&self, payload: &str) -> Result<()> {
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(RELAY_CHANNEL)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}
