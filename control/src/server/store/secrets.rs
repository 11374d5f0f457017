//! The queries of secrets, stored sealed: a row holds a key's nonce and
//! ciphertext (sealed and opened by `server::secrets`, never here), read for
//! one service and environment or all at once, and resealed all together in
//! one transaction when `rotate-key` changes the key.

use sqlx::Row;

use super::batch::Statement;
use super::{Result, Store, now_ms};

#[derive(Clone, Debug)]
pub struct SecretRow {
    pub key: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub updated: i64,
}

/// The upsert of one sealed secret (`put_secret`, and a deploy's own).
pub(super) fn put_statement(
    service: &str,
    environment: &str,
    key: &str,
    nonce: &[u8],
    ciphertext: &[u8],
    now: i64,
) -> Statement {
    Statement::new(
        "INSERT INTO secrets (service, environment, key, nonce, ciphertext, updated) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (service, environment, key) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated = excluded.updated",
        vec![
            service.into(),
            environment.into(),
            key.into(),
            nonce.into(),
            ciphertext.into(),
            now.into(),
        ],
    )
}

impl Store {
    pub async fn put_secret(
        &self,
        service: &str,
        environment: &str,
        key: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<()> {
        put_statement(service, environment, key, nonce, ciphertext, now_ms())
            .query()
            .execute(&self.writer)
            .await
            .map(drop)
    }

    pub async fn secrets(&self, service: &str, environment: &str) -> Result<Vec<SecretRow>> {
        sqlx::query("SELECT key, nonce, ciphertext, updated FROM secrets WHERE service = $1 AND environment = $2 ORDER BY key")
            .bind(service)
            .bind(environment)
            .fetch_all(&self.pool)
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| SecretRow {
                        key: r.get("key"),
                        nonce: r.get("nonce"),
                        ciphertext: r.get("ciphertext"),
                        updated: r.get("updated"),
                    })
                    .collect()
            })
    }

    /// Every secret as `(service, environment, key, nonce, ciphertext)`.
    pub async fn all_secrets(&self) -> Result<Vec<(String, String, String, Vec<u8>, Vec<u8>)>> {
        sqlx::query("SELECT service, environment, key, nonce, ciphertext FROM secrets ORDER BY service, environment, key")
            .fetch_all(&self.pool)
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r.get("service"),
                            r.get("environment"),
                            r.get("key"),
                            r.get("nonce"),
                            r.get("ciphertext"),
                        )
                    })
                    .collect()
            })
    }

    /// Replaces every secret's `(nonce, ciphertext)` with what `reseal` makes
    /// of `(service, environment, key, nonce, ciphertext)` and sets `setting`,
    /// in one transaction: every row changes or none does. Returns the count.
    pub async fn reseal_secrets<E>(
        &self,
        reseal: impl Fn(&str, &str, &str, &[u8], &[u8]) -> std::result::Result<(Vec<u8>, Vec<u8>), E>,
        setting: (&str, &str),
    ) -> std::result::Result<usize, E>
    where
        E: From<sqlx::Error>,
    {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query("SELECT service, environment, key, nonce, ciphertext FROM secrets")
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            let (service, environment, key): (String, String, String) =
                (row.get("service"), row.get("environment"), row.get("key"));
            let nonce: Vec<u8> = row.get("nonce");
            let ciphertext: Vec<u8> = row.get("ciphertext");
            let (nonce, ciphertext) = reseal(&service, &environment, &key, &nonce, &ciphertext)?;
            sqlx::query("UPDATE secrets SET nonce = $1, ciphertext = $2 WHERE service = $3 AND environment = $4 AND key = $5")
                .bind(nonce)
                .bind(ciphertext)
                .bind(&service)
                .bind(&environment)
                .bind(&key)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(setting.0)
            .bind(setting.1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Returns false when there was no such secret.
    pub async fn delete_secret(&self, service: &str, environment: &str, key: &str) -> Result<bool> {
        sqlx::query("DELETE FROM secrets WHERE service = $1 AND environment = $2 AND key = $3")
            .bind(service)
            .bind(environment)
            .bind(key)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected() > 0)
    }
}
