//! The queries of a mission's log lines, numbered by its agent (`seq`): the
//! last seq stored, new lines in multi-row inserts that skip a seq already
//! there, and the lines after a seq, in order.

use sqlx::Row;

use launch_proto::LogLine;

use super::{Result, Store, engine};

fn log_line(row: &sqlx::any::AnyRow) -> LogLine {
    LogLine {
        seq: row.get::<i64, _>("seq") as u64,
        unix_ms: row.get("unix_ms"),
        stream: row.get::<i64, _>("stream") as i32,
        source: row.get("source"),
        text: row.get("text"),
    }
}

impl Store {
    pub async fn last_seq(&self, mission_id: &str) -> Result<u64> {
        sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM log_lines WHERE mission_id = $1")
            .bind(mission_id)
            .fetch_one(&self.pool)
            .await
            .map(|r| r.get::<i64, _>("seq") as u64)
    }

    /// Stores lines (already filtered to new seqs) in one transaction.
    pub async fn insert_lines(&self, mission_id: &str, lines: &[LogLine]) -> Result<()> {
        // One multi-row INSERT per 150 lines (6 parameters each stays under
        // SQLite's oldest limit of 999): a statement per line costs ~5x more.
        let mut tx = self.writer.begin().await?;
        for chunk in lines.chunks(150) {
            let sql = engine::multi_row_insert(
                self.engine,
                "INSERT INTO log_lines (mission_id, seq, unix_ms, stream, source, text)",
                6,
                chunk.len(),
                "ON CONFLICT (mission_id, seq) DO NOTHING",
            );
            let mut insert = sqlx::query(&sql);
            for line in chunk {
                insert = insert
                    .bind(mission_id)
                    .bind(line.seq as i64)
                    .bind(line.unix_ms)
                    .bind(line.stream as i64)
                    .bind(&line.source)
                    .bind(&line.text);
            }
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Up to `limit` stored lines with seq > `after`, in order.
    pub async fn lines_after(
        &self,
        mission_id: &str,
        after: u64,
        limit: i64,
    ) -> Result<Vec<LogLine>> {
        sqlx::query("SELECT seq, unix_ms, stream, source, text FROM log_lines WHERE mission_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(mission_id)
            .bind(after as i64)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.iter().map(log_line).collect())
    }
}
