//! The queries behind scoped API tokens (migration 0014): insert, look up by
//! hash, list, revoke, and the throttled `last_used` stamp. Kept beside
//! `store.rs` so the token rules stay in one file and the shared store does
//! not grow.

use sqlx::Row;

use super::{Result, Store, now_ms};

/// How often a token's `last_used` is written at most (one write per minute,
/// not one per call).
const LAST_USED_EVERY_MS: i64 = 60_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: String,
    pub name: String,
    /// `admin`, `deploy` or `read`.
    pub scope: String,
    pub service_pattern: String,
    pub environment_pattern: String,
    pub expires: Option<i64>,
    pub creator: String,
    pub created: i64,
    pub last_used: Option<i64>,
    pub revoked: bool,
}

/// A token to insert; `hash` is the sha256 of the token, never the token.
pub struct NewApiToken<'a> {
    pub id: &'a str,
    pub hash: &'a str,
    pub name: &'a str,
    pub scope: &'a str,
    pub service_pattern: &'a str,
    pub environment_pattern: &'a str,
    pub expires: Option<i64>,
    pub creator: &'a str,
}

const COLUMNS: &str = "id, name, scope, service_pattern, environment_pattern, expires, creator, created, last_used, revoked";

fn row(row: &sqlx::any::AnyRow) -> ApiTokenRow {
    ApiTokenRow {
        id: row.get("id"),
        name: row.get("name"),
        scope: row.get("scope"),
        service_pattern: row.get("service_pattern"),
        environment_pattern: row.get("environment_pattern"),
        expires: row.get("expires"),
        creator: row.get("creator"),
        created: row.get("created"),
        last_used: row.get("last_used"),
        revoked: row.get::<i64, _>("revoked") != 0,
    }
}

impl Store {
    pub async fn insert_api_token(&self, token: &NewApiToken<'_>) -> Result<ApiTokenRow> {
        sqlx::query(
            "INSERT INTO api_tokens (id, hash, name, created, scope, service_pattern, environment_pattern, expires, creator) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(token.id)
        .bind(token.hash)
        .bind(token.name)
        .bind(now_ms())
        .bind(token.scope)
        .bind(token.service_pattern)
        .bind(token.environment_pattern)
        .bind(token.expires)
        .bind(token.creator)
        .execute(&self.writer)
        .await?;
        let query = format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1");
        sqlx::query(&query)
            .bind(token.id)
            .fetch_one(&self.pool)
            .await
            .map(|r| row(&r))
    }

    /// The token with this hash, revoked or not.
    pub async fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiTokenRow>> {
        let query = format!("SELECT {COLUMNS} FROM api_tokens WHERE hash = $1");
        sqlx::query(&query)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map(|r| r.as_ref().map(row))
    }

    pub async fn api_token(&self, id: &str) -> Result<Option<ApiTokenRow>> {
        let query = format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1");
        sqlx::query(&query)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map(|r| r.as_ref().map(row))
    }

    /// Every token, oldest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>> {
        let query = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY created, id");
        sqlx::query(&query)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(row).collect())
    }

    /// Marks the token revoked; false when there is no such token.
    pub async fn revoke_api_token(&self, id: &str) -> Result<bool> {
        sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await
            .map(|done| done.rows_affected() > 0)
    }

    /// Records a use of the token, at most once a minute.
    pub async fn touch_api_token(&self, id: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "UPDATE api_tokens SET last_used = $1 WHERE id = $2 AND (last_used IS NULL OR last_used < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - LAST_USED_EVERY_MS)
        .execute(&self.writer)
        .await
        .map(drop)
    }
}

#[cfg(test)]
impl Store {
    /// Moves the token's expiry into the past (tests only).
    pub async fn expire_api_token_for_test(&self, id: &str) {
        sqlx::query("UPDATE api_tokens SET expires = $1 WHERE id = $2")
            .bind(now_ms() - 1000)
            .bind(id)
            .execute(&self.writer)
            .await
            .expect("expire the token");
    }
}
