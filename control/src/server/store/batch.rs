//! Writes as values — a statement and its arguments — so that several can
//! be sent to the database as one. SQLite's connection lives on a thread
//! of its own (sqlx's worker), and every statement is a hand-off to that
//! thread and back: two context switches, tens of microseconds on a busy
//! host, and on the one writer connection they queue. A [`Batch`] on SQLite
//! is one multi-statement string (sqlx binds plain `?` across its
//! statements in order), one hand-off however many statements it holds,
//! kept prepared on its connection: a batch of the same statements (a
//! deploy's, for every deploy of the same shape) is compiled once, not at
//! each run — compiling was most of SQLite's time when a group's batch was
//! one string that never repeated. On PostgreSQL, whose extended protocol
//! takes one statement a message, the statements run one after another.
//!
//! Statements are written once, with `$1`, `$2`, … numbered in the order of
//! their arguments, each used once; SQLite's form replaces them with `?`.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};

use super::{Engine, Result};

/// An argument of a [`Statement`].
#[derive(Clone, Debug)]
pub(super) enum Value {
    Text(String),
    Int(i64),
    Blob(Vec<u8>),
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Self {
        Value::Text(text.clone())
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Self {
        Value::Int(number)
    }
}

impl From<&[u8]> for Value {
    fn from(bytes: &[u8]) -> Self {
        Value::Blob(bytes.to_vec())
    }
}

/// One SQL statement with its arguments.
#[derive(Clone, Debug)]
pub(super) struct Statement {
    sql: String,
    args: Vec<Value>,
}

impl Statement {
    /// `sql` numbers its placeholders `$1`… in the order of `args`.
    pub fn new(sql: impl Into<String>, args: Vec<Value>) -> Self {
        let sql = sql.into();
        debug_assert_eq!(
            placeholders_in_order(&sql),
            Some(args.len()),
            "{sql}: placeholders $1…$N in order, one per argument"
        );
        Statement { sql, args }
    }

    /// The statement as a query to run on its own (either engine: a
    /// single statement's numbered placeholders are fine on SQLite).
    pub fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        bind_all(sqlx::query(&self.sql), &self.args)
    }
}

/// Statements to run as one, in order.
#[derive(Debug, Default)]
pub(super) struct Batch {
    statements: Vec<Statement>,
}

impl Batch {
    pub fn extend(&mut self, statements: impl IntoIterator<Item = Statement>) {
        self.statements.extend(statements);
    }

    /// Runs every statement on `conn` (in the caller's transaction) and
    /// returns the rows they return, in order: on SQLite in one hand-off,
    /// on PostgreSQL one statement after another.
    pub async fn fetch_all(&self, engine: Engine, conn: &mut AnyConnection) -> Result<Vec<AnyRow>> {
        match engine {
            Engine::Sqlite => {
                let sql = self.sqlite_sql();
                let args = self.statements.iter().flat_map(|s| &s.args);
                // Kept prepared (sqlx's cache on the connection): the
                // same batch runs again with the next deploy of its shape.
                bind_all(sqlx::query(&sql), args).fetch_all(conn).await
            }
            Engine::Postgres => {
                let mut rows = Vec::new();
                for statement in &self.statements {
                    rows.extend(statement.query().fetch_all(&mut *conn).await?);
                }
                Ok(rows)
            }
        }
    }

    /// The statements joined, their placeholders plain `?`.
    fn sqlite_sql(&self) -> String {
        let mut sql = String::new();
        for statement in &self.statements {
            let mut rest = statement.sql.as_str();
            while let Some(at) = rest.find('$') {
                sql.push_str(&rest[..at]);
                sql.push('?');
                let digits = rest[at + 1..]
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len() - at - 1);
                rest = &rest[at + 1 + digits..];
            }
            sql.push_str(rest);
            sql.push_str(";\n");
        }
        sql
    }
}

fn bind_all<'q>(
    mut query: Query<'q, Any, AnyArguments<'q>>,
    args: impl IntoIterator<Item = &'q Value>,
) -> Query<'q, Any, AnyArguments<'q>> {
    for arg in args {
        query = match arg {
            Value::Text(text) => query.bind(text.as_str()),
            Value::Int(number) => query.bind(*number),
            Value::Blob(bytes) => query.bind(bytes.as_slice()),
        };
    }
    query
}

/// How many placeholders `sql` has if they are `$1`, `$2`, … in order,
/// each once; `None` otherwise.
fn placeholders_in_order(sql: &str) -> Option<usize> {
    let mut expected = 1;
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        let digits: String = rest[at + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.parse::<usize>().ok()? != expected {
            return None;
        }
        expected += 1;
        rest = &rest[at + 1 + digits.len()..];
    }
    Some(expected - 1)
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::super::test_engines::stores;
    use super::*;

    #[test]
    fn sqlites_form_joins_the_statements_with_plain_placeholders() {
        let mut batch = Batch::default();
        batch.extend([
            Statement::new(
                "INSERT INTO t (a, b) VALUES ($1, $2)",
                vec!["x".into(), 1.into()],
            ),
            Statement::new("DELETE FROM t WHERE a = $1", vec!["y".into()]),
        ]);
        assert_eq!(
            batch.sqlite_sql(),
            "INSERT INTO t (a, b) VALUES (?, ?);\nDELETE FROM t WHERE a = ?;\n"
        );
    }

    #[test]
    fn placeholders_must_be_numbered_in_order_once_each() {
        assert_eq!(placeholders_in_order("SELECT 1"), Some(0));
        assert_eq!(placeholders_in_order("VALUES ($1, $2, $3)"), Some(3));
        assert_eq!(placeholders_in_order("VALUES ($2, $1)"), None);
        assert_eq!(placeholders_in_order("VALUES ($1, $1)"), None);
        assert_eq!(placeholders_in_order("VALUES ($10)"), None);
    }

    #[tokio::test]
    async fn a_batch_runs_its_statements_in_order_and_returns_their_rows_on_both_engines() {
        for (_dir, store) in stores("batch", "").await {
            let engine = store.engine();
            let mut conn = store.writer.acquire().await.unwrap();
            let bytes = match engine {
                Engine::Sqlite => "BLOB",
                Engine::Postgres => "BYTEA",
            };
            sqlx::query(&format!(
                "CREATE TABLE batch_t (a TEXT PRIMARY KEY, n BIGINT NOT NULL, b {bytes})"
            ))
            .execute(&mut *conn)
            .await
            .unwrap();
            let mut batch = Batch::default();
            batch.extend([("one", 1), ("two", 2)].map(|(a, n): (&str, i64)| {
                Statement::new(
                    "INSERT INTO batch_t (a, n, b) VALUES ($1, $2, $3) RETURNING n",
                    vec![a.into(), n.into(), [n as u8].as_slice().into()],
                )
            }));
            batch.extend([Statement::new(
                "UPDATE batch_t SET n = n + $1 WHERE a = $2",
                vec![10.into(), "one".into()],
            )]);
            let rows = batch.fetch_all(engine, &mut conn).await.unwrap();
            let returned: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(returned, [1, 2], "{engine:?}: the RETURNING rows in order");
            let after: Vec<(String, i64, Vec<u8>)> =
                sqlx::query("SELECT a, n, b FROM batch_t ORDER BY a")
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect();
            assert_eq!(
                after,
                [
                    ("one".to_owned(), 11, vec![1]),
                    ("two".to_owned(), 2, vec![2])
                ],
                "{engine:?}: the later statement saw the earlier ones"
            );
        }
    }
}
