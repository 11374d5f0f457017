//! The queries behind dashboard sessions (migration 0026): insert, find by
//! the session id's hash while unexpired, delete one, delete every session
//! of a token, and sweep the expired ones. What the columns hold, and why
//! the table alone lets no one in, is in the migration.

use sqlx::Row;

use super::{Result, Store, now_ms};

#[derive(Clone, Debug)]
pub struct DashboardSessionRow {
    pub id_hash: String,
    pub token_hash: String,
    pub token_nonce: Vec<u8>,
    pub token_sealed: Vec<u8>,
    pub csrf: String,
    pub name: String,
    pub scope: String,
    pub created: i64,
    pub expires: i64,
}

impl Store {
    pub async fn insert_dashboard_session(&self, session: &DashboardSessionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_hash, token_hash, token_nonce, token_sealed, csrf, name, scope, created, expires) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&session.id_hash)
        .bind(&session.token_hash)
        .bind(&session.token_nonce)
        .bind(&session.token_sealed)
        .bind(&session.csrf)
        .bind(&session.name)
        .bind(&session.scope)
        .bind(session.created)
        .bind(session.expires)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The unexpired session whose id hashes to `id_hash`.
    pub async fn dashboard_session(&self, id_hash: &str) -> Result<Option<DashboardSessionRow>> {
        let row = sqlx::query(
            "SELECT id_hash, token_hash, token_nonce, token_sealed, csrf, name, scope, created, expires \
             FROM dashboard_sessions WHERE id_hash = $1 AND expires > $2",
        )
        .bind(id_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| DashboardSessionRow {
            id_hash: row.get("id_hash"),
            token_hash: row.get("token_hash"),
            token_nonce: row.get("token_nonce"),
            token_sealed: row.get("token_sealed"),
            csrf: row.get("csrf"),
            name: row.get("name"),
            scope: row.get("scope"),
            created: row.get("created"),
            expires: row.get("expires"),
        }))
    }

    pub async fn delete_dashboard_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Ends every session acting with the token of this hash.
    pub async fn delete_dashboard_sessions_of(&self, token_hash: &str) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM dashboard_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }

    pub async fn delete_expired_dashboard_sessions(&self) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM dashboard_sessions WHERE expires <= $1")
                .bind(now_ms())
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }
}
