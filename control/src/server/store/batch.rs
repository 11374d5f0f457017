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
//! takes one statement a message, the statements run one after another in
//! the caller's transaction, or — when they touch distinct rows, as a
//! deploy's do — as one statement of data-modifying `WITH` queries
//! ([`Batch::fetch_all_as_one`]): one round trip and its own transaction.
//!
//! Statements are written once, with `$1`, `$2`, … numbered in the order of
//! their arguments, each used once; SQLite's form replaces them with `?`.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool};

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

    /// Runs the statements on PostgreSQL as one statement, in a
    /// transaction of its own, and returns the first one's `RETURNING`
    /// rows. Where a transaction of the statements one by one cost a round
    /// trip each plus BEGIN and COMMIT, this is one; the CPU a deploy's
    /// statements cost the database (and pgbench) falls from about 0.4 to
    /// 0.2 ms (the load bench's floor on PostgreSQL, BENCHMARKS.md).
    /// Its parts run on one snapshot and do not see each other's writes,
    /// so a batch run this way must touch each row at most once and read
    /// nothing another of its statements writes.
    pub async fn fetch_all_as_one(&self, pool: &AnyPool) -> Result<Vec<AnyRow>> {
        let sql = self.postgres_sql();
        let args = self.statements.iter().flat_map(|s| &s.args);
        bind_all(sqlx::query(&sql), args).fetch_all(pool).await
    }

    /// The statements joined, their placeholders plain `?`.
    fn sqlite_sql(&self) -> String {
        let mut sql = String::new();
        for statement in &self.statements {
            push_renumbered(&mut sql, &statement.sql, |_| "?".to_owned());
            sql.push_str(";\n");
        }
        sql
    }

    /// The statements as parts of one `WITH`, their placeholders numbered
    /// on across them, selecting the first one's `RETURNING` rows.
    fn postgres_sql(&self) -> String {
        debug_assert!(
            self.statements
                .first()
                .is_some_and(|first| first.sql.contains(" RETURNING ")),
            "the first statement of a batch run as one returns its rows"
        );
        let mut sql = String::from("WITH ");
        let mut before = 0;
        for (i, statement) in self.statements.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("part{i} AS ("));
            push_renumbered(&mut sql, &statement.sql, |n| format!("${}", before + n));
            sql.push(')');
            before += statement.args.len();
        }
        sql.push_str(" SELECT * FROM part0");
        sql
    }
}

/// Appends `statement` to `sql` with each placeholder `$N` replaced by
/// `placeholder(N)`.
fn push_renumbered(sql: &mut String, statement: &str, placeholder: impl Fn(usize) -> String) {
    let mut rest = statement;
    while let Some(at) = rest.find('$') {
        sql.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        let number = rest[at + 1..at + 1 + digits].parse().unwrap_or(0);
        sql.push_str(&placeholder(number));
        rest = &rest[at + 1 + digits..];
    }
    sql.push_str(rest);
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
    fn postgresqls_form_is_one_with_numbering_the_placeholders_on() {
        let mut batch = Batch::default();
        batch.extend([
            Statement::new(
                "INSERT INTO t (a, b) VALUES ($1, $2) RETURNING b",
                vec!["x".into(), 1.into()],
            ),
            Statement::new("DELETE FROM u WHERE a = $1", vec!["y".into()]),
        ]);
        assert_eq!(
            batch.postgres_sql(),
            "WITH part0 AS (INSERT INTO t (a, b) VALUES ($1, $2) RETURNING b), \
             part1 AS (DELETE FROM u WHERE a = $3) SELECT * FROM part0"
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

    #[tokio::test]
    async fn a_batch_run_as_one_on_postgresql_writes_every_part_or_none() {
        let (_dir, store) = stores("batch_one", "").await.pop().unwrap();
        assert_eq!(store.engine(), Engine::Postgres);
        sqlx::query("CREATE TABLE one_t (a TEXT PRIMARY KEY, n BIGINT NOT NULL)")
            .execute(&store.writer)
            .await
            .unwrap();
        sqlx::query("INSERT INTO one_t (a, n) VALUES ('old', 0), ('kept', 0)")
            .execute(&store.writer)
            .await
            .unwrap();
        let batch = |second: &str| {
            let mut batch = Batch::default();
            batch.extend([
                Statement::new(
                    "INSERT INTO one_t (a, n) VALUES ($1, $2) RETURNING n",
                    vec!["new".into(), 7.into()],
                ),
                Statement::new(
                    "INSERT INTO one_t (a, n) VALUES ($1, $2)",
                    vec![second.into(), 8.into()],
                ),
                Statement::new("DELETE FROM one_t WHERE a = $1", vec!["old".into()]),
            ]);
            batch
        };
        let all = || async {
            sqlx::query("SELECT a, n FROM one_t ORDER BY a")
                .fetch_all(&store.writer)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
                .collect::<Vec<_>>()
        };
        // A part that fails (the key exists) leaves the others unwritten.
        let refused = batch("kept").fetch_all_as_one(&store.writer).await;
        assert!(refused.is_err(), "a duplicate key fails the statement");
        assert_eq!(all().await, [("kept".to_owned(), 0), ("old".to_owned(), 0)]);
        let rows = batch("second")
            .fetch_all_as_one(&store.writer)
            .await
            .unwrap();
        let returned: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(returned, [7], "the first part's RETURNING rows");
        assert_eq!(
            all().await,
            [
                ("kept".to_owned(), 0),
                ("new".to_owned(), 7),
                ("second".to_owned(), 8)
            ]
        );
    }
}
