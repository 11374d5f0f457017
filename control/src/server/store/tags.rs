//! The queries of service tags (`key=value` on a service and environment):
//! written by the provider (`EnsureService`), by a deploy's `launch.toml`
//! `[tags]` and by `launch services tag|untag`; read with the services (and
//! searched by them, `store::search`) and as the vocabulary the dashboard's
//! search completes from.
//!
//! Each key has one owner ([`TagSource`]). Terraform and `launch.toml` are
//! declarations: each apply or deploy replaces exactly the keys its source
//! owns, taking over a key it names from any other source. The CLI edits
//! only keys neither declaration owns, so a hand edit is never undone
//! silently by the next apply. Tags are checked by `launch_core::tags`
//! before they reach this module; a retired service's tags go with it.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Any, Row, Transaction};

use super::batch::{Statement, Value};
use super::search::after_prefix;
use super::{Result, Store, now_ms};

/// Who owns a tag key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagSource {
    /// The provider's `tags` on `launch_service`.
    Terraform,
    /// `[tags]` in the deployed `launch.toml`.
    LaunchToml,
    /// `launch services tag`.
    Cli,
}

impl TagSource {
    pub fn label(self) -> &'static str {
        match self {
            TagSource::Terraform => "terraform",
            TagSource::LaunchToml => "launch.toml",
            TagSource::Cli => "cli",
        }
    }

    pub(super) fn from_label(label: &str) -> Self {
        match label {
            "terraform" => TagSource::Terraform,
            "launch.toml" => TagSource::LaunchToml,
            _ => TagSource::Cli,
        }
    }
}

/// One tag of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRow {
    pub service: String,
    pub environment: String,
    pub key: String,
    pub value: String,
    pub source: TagSource,
}

fn tag_row(row: &sqlx::any::AnyRow) -> TagRow {
    TagRow {
        service: row.get("service"),
        environment: row.get("environment"),
        key: row.get("key"),
        value: row.get("value"),
        source: TagSource::from_label(row.get("source")),
    }
}

impl Store {
    /// The CLI's edit: sets each `(key, value)` of `set` and removes each key
    /// of `remove`, in one transaction. Returns the tags of the edit that
    /// Terraform or `launch.toml` own; when there are any, nothing is written.
    pub async fn set_service_tags(
        &self,
        service: &str,
        environment: &str,
        set: &[(String, String)],
        remove: &[String],
    ) -> Result<Vec<TagRow>> {
        // Writes first (each touching only the CLI's own rows), then the
        // check: a transaction that reads before it writes can fail with
        // SQLITE_BUSY instead of waiting for the busy timeout.
        let mut tx = self.writer.begin().await?;
        for key in remove {
            sqlx::query(
                "DELETE FROM service_tags WHERE service = $1 AND environment = $2 AND key = $3 AND source = $4",
            )
            .bind(service)
            .bind(environment)
            .bind(key)
            .bind(TagSource::Cli.label())
            .execute(&mut *tx)
            .await?;
        }
        for (key, value) in set {
            upsert(&mut tx, service, environment, key, value, TagSource::Cli).await?;
        }
        let named: BTreeSet<&str> = set
            .iter()
            .map(|(key, _)| key.as_str())
            .chain(remove.iter().map(String::as_str))
            .collect();
        let conflicts: Vec<TagRow> = tags_in(&mut tx, service, environment)
            .await?
            .into_iter()
            .filter(|tag| tag.source != TagSource::Cli && named.contains(tag.key.as_str()))
            .collect();
        if conflicts.is_empty() {
            tx.commit().await?;
        }
        Ok(conflicts)
    }

    /// A declaration's apply (Terraform's `tags`, a deploy's `[tags]`): the
    /// keys `source` owns become exactly `tags`. Keys it no longer names are
    /// removed; keys it names are set and owned by it from now on.
    pub async fn replace_source_tags(
        &self,
        service: &str,
        environment: &str,
        source: TagSource,
        tags: &[(String, String)],
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        replace_in(&mut tx, service, environment, source, tags).await?;
        tx.commit().await
    }

    /// The tags of one service, by key.
    pub async fn service_tags(&self, service: &str, environment: &str) -> Result<Vec<TagRow>> {
        sqlx::query(
            "SELECT * FROM service_tags WHERE service = $1 AND environment = $2 ORDER BY key",
        )
        .bind(service)
        .bind(environment)
        .fetch_all(&self.pool)
        .await
        .map(|rows| rows.iter().map(tag_row).collect())
    }

    /// The tags of every service that is not retired, by service,
    /// environment and key.
    pub async fn all_service_tags(&self) -> Result<Vec<TagRow>> {
        sqlx::query(
            "SELECT t.* FROM service_tags t JOIN services s ON s.service = t.service AND s.environment = t.environment WHERE s.retired = 0 ORDER BY t.service, t.environment, t.key",
        )
        .fetch_all(&self.pool)
        .await
        .map(|rows| rows.iter().map(tag_row).collect())
    }

    /// What a search box completes `prefix` to, from the tags of services
    /// that are not retired: bare keys starting with `prefix`, then
    /// `key:value` pairs starting with it, the value compared in any case
    /// (`key=value` is read as `key:value`), each group in byte order, at
    /// most `limit` terms, each with how many services have it. With
    /// `names`, also the search's built-in keys: `service` with the
    /// services' names and `env` with their environments.
    pub async fn tag_vocabulary(
        &self,
        prefix: &str,
        limit: usize,
        names: bool,
    ) -> Result<Vec<(String, u64)>> {
        if prefix.contains('\0') {
            // No key or name holds one (and PostgreSQL refuses it in text).
            return Ok(Vec::new());
        }
        let prefix = prefix.replacen('=', ":", 1);
        let (key_prefix, value_prefix) = match prefix.split_once(':') {
            Some((key, value)) => (key, Some(value.to_lowercase())),
            None => (prefix.as_str(), None),
        };
        // Only the rows the answer can name, read from the (key, value)
        // index: a typed value needs its key exactly; otherwise every key
        // starting with the prefix, a range in byte order (exactly the keys
        // with that prefix, see `after_prefix`).
        let bytes = self.engine.byte_order();
        let mut binds = vec![key_prefix.to_owned()];
        let key_test = match (&value_prefix, after_prefix(key_prefix)) {
            (Some(_), _) => "t.key = $1".to_owned(),
            (None, None) => format!("t.key{bytes} >= $1"),
            (None, Some(after)) => {
                binds.push(after);
                format!("t.key{bytes} >= $1 AND t.key{bytes} < $2")
            }
        };
        // One row per (key, value) with the number of services that have it
        // (a service has one value per key); the built-in keys only when
        // the answer can name them.
        let mut sql = format!(
            "SELECT t.key AS term_key, t.value AS term_value, COUNT(*) AS services FROM service_tags t
             JOIN services s ON s.service = t.service AND s.environment = t.environment
             WHERE s.retired = 0 AND {key_test} GROUP BY t.key, t.value"
        );
        let named = |key: &str| match value_prefix {
            Some(_) => key == key_prefix,
            None => key.starts_with(key_prefix),
        };
        if names && named("service") {
            sql.push_str(
                " UNION ALL SELECT 'service', service, COUNT(*) FROM services WHERE retired = 0 GROUP BY service",
            );
        }
        if names && named("env") {
            sql.push_str(
                " UNION ALL SELECT 'env', environment, COUNT(*) FROM services WHERE retired = 0 GROUP BY environment",
            );
        }
        let rows = binds
            .iter()
            .fold(sqlx::query(&sql), |query, bind| query.bind(bind.as_str()))
            .fetch_all(&self.pool)
            .await?;
        let mut keys: BTreeMap<String, u64> = BTreeMap::new();
        let mut pairs: BTreeMap<String, u64> = BTreeMap::new();
        for row in &rows {
            let key: String = row.get("term_key");
            let value: String = row.get("term_value");
            let services = u64::try_from(row.get::<i64, _>("services")).unwrap_or_default();
            let pair = match &value_prefix {
                None => true,
                Some(prefix) => key == key_prefix && value.to_lowercase().starts_with(prefix),
            };
            if pair {
                *pairs.entry(format!("{key}:{value}")).or_default() += services;
            }
            if value_prefix.is_none() {
                *keys.entry(key).or_default() += services;
            }
        }
        Ok(keys.into_iter().chain(pairs).take(limit).collect())
    }
}

/// A retired service's tags go with it, so one created again under the name
/// starts clean.
pub(super) async fn forget_all(
    tx: &mut Transaction<'_, Any>,
    service: &str,
    environment: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM service_tags WHERE service = $1 AND environment = $2")
        .bind(service)
        .bind(environment)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// [`Store::replace_source_tags`] inside a caller's transaction (a deploy's).
pub(super) async fn replace_in(
    tx: &mut Transaction<'_, Any>,
    service: &str,
    environment: &str,
    source: TagSource,
    tags: &[(String, String)],
) -> Result<()> {
    for statement in replace_statements(service, environment, source, tags, now_ms()) {
        statement.query().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The statements of [`replace_in`], at `now`.
pub(super) fn replace_statements(
    service: &str,
    environment: &str,
    source: TagSource,
    tags: &[(String, String)],
    now: i64,
) -> Vec<Statement> {
    // The keys no longer declared are deleted and the declared ones
    // upserted, so no row is written twice: a deploy runs these as parts of
    // one statement on PostgreSQL (`missions::record_one`).
    let mut delete = String::from(
        "DELETE FROM service_tags WHERE service = $1 AND environment = $2 AND source = $3",
    );
    let mut args: Vec<Value> = vec![service.into(), environment.into(), source.label().into()];
    if !tags.is_empty() {
        let kept: Vec<String> = (0..tags.len()).map(|i| format!("${}", i + 4)).collect();
        delete.push_str(&format!(" AND key NOT IN ({})", kept.join(", ")));
        args.extend(tags.iter().map(|(key, _)| key.into()));
    }
    let mut statements = vec![Statement::new(delete, args)];
    statements.extend(
        tags.iter()
            .map(|(key, value)| upsert_statement(service, environment, key, value, source, now)),
    );
    statements
}

async fn tags_in(
    tx: &mut Transaction<'_, Any>,
    service: &str,
    environment: &str,
) -> Result<Vec<TagRow>> {
    sqlx::query("SELECT * FROM service_tags WHERE service = $1 AND environment = $2")
        .bind(service)
        .bind(environment)
        .fetch_all(&mut **tx)
        .await
        .map(|rows| rows.iter().map(tag_row).collect())
}

/// Sets one tag owned by `source`. A declaration takes the key over from
/// any owner; the CLI changes only a key that is its own (or new).
async fn upsert(
    tx: &mut Transaction<'_, Any>,
    service: &str,
    environment: &str,
    key: &str,
    value: &str,
    source: TagSource,
) -> Result<()> {
    upsert_statement(service, environment, key, value, source, now_ms())
        .query()
        .execute(&mut **tx)
        .await
        .map(drop)
}

fn upsert_statement(
    service: &str,
    environment: &str,
    key: &str,
    value: &str,
    source: TagSource,
    now: i64,
) -> Statement {
    let only_own = if source == TagSource::Cli {
        " WHERE service_tags.source = excluded.source"
    } else {
        ""
    };
    Statement::new(
        format!(
            "INSERT INTO service_tags (service, environment, key, value, source, updated) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (service, environment, key) DO UPDATE SET value = excluded.value, source = excluded.source, updated = excluded.updated{only_own}",
        ),
        vec![
            service.into(),
            environment.into(),
            key.into(),
            value.into(),
            source.label().into(),
            now.into(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use launch_core::tags::{TagFilter, parse_search};

    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/launch.db", dir.path().display());
        let store = Store::open(&url).await.unwrap();
        (dir, store)
    }

    fn pairs(tags: &[(&str, &str)]) -> Vec<(String, String)> {
        tags.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn summary(rows: &[TagRow]) -> Vec<String> {
        rows.iter()
            .map(|t| format!("{}={} ({})", t.key, t.value, t.source.label()))
            .collect()
    }

    /// Three services: api (team=platform, tier=1), web (team=payments,
    /// tier=2) and db (team=platform), all in prod.
    async fn fleet() -> (tempfile::TempDir, Store) {
        let (dir, store) = store().await;
        for (service, tags) in [
            ("api", pairs(&[("team", "platform"), ("tier", "1")])),
            ("web", pairs(&[("team", "payments"), ("tier", "2")])),
            ("db", pairs(&[("team", "platform")])),
        ] {
            store.ensure_service(service, "prod").await.unwrap();
            let conflicts = store
                .set_service_tags(service, "prod", &tags, &[])
                .await
                .unwrap();
            assert!(conflicts.is_empty());
        }
        (dir, store)
    }

    async fn matching(store: &Store, line: &str) -> Vec<String> {
        let filters = parse_search(line).unwrap();
        store
            .services_matching_tags(&filters)
            .await
            .unwrap()
            .into_iter()
            .map(|(service, _)| service)
            .collect()
    }

    #[tokio::test]
    async fn the_cli_sets_and_removes_tags() {
        let (_dir, store) = fleet().await;
        store
            .set_service_tags(
                "api",
                "prod",
                &pairs(&[("tier", "3")]),
                &["team".to_owned(), "absent".to_owned()],
            )
            .await
            .unwrap();
        let tags = store.service_tags("api", "prod").await.unwrap();
        assert_eq!(summary(&tags), ["tier=3 (cli)"]);
    }

    #[tokio::test]
    async fn filters_are_and_with_the_last_term_a_prefix_while_typed() {
        let (_dir, store) = fleet().await;
        assert_eq!(matching(&store, "").await, ["api", "db", "web"]);
        assert_eq!(matching(&store, "team:platform").await, ["api", "db"]);
        assert_eq!(matching(&store, "team=platform tier").await, ["api"]);
        assert_eq!(matching(&store, "team:pla").await, ["api", "db"]);
        assert_eq!(matching(&store, "team:pa").await, ["web"]);
        assert_eq!(matching(&store, "team:pa ").await, Vec::<String>::new());
        assert_eq!(matching(&store, "ti").await, ["api", "web"]);
        assert_eq!(matching(&store, "tier:2 team:p").await, ["web"]);
        // An exact filter from `launch services --tag` is no prefix.
        let exact = [TagFilter::parse("team=pla").unwrap()];
        assert!(
            store
                .services_matching_tags(&exact)
                .await
                .unwrap()
                .is_empty()
        );
        // A LIKE wildcard in a prefix is a plain character.
        assert_eq!(matching(&store, "t_").await, Vec::<String>::new());
    }

    /// The terms of [`Store::tag_vocabulary`] as `term (services)`.
    async fn vocabulary(store: &Store, prefix: &str, limit: usize, names: bool) -> Vec<String> {
        store
            .tag_vocabulary(prefix, limit, names)
            .await
            .unwrap()
            .into_iter()
            .map(|(term, services)| format!("{term} ({services})"))
            .collect()
    }

    #[tokio::test]
    async fn the_vocabulary_lists_keys_then_pairs_by_prefix_with_their_counts() {
        let (_dir, store) = fleet().await;
        assert_eq!(
            vocabulary(&store, "", 100, false).await,
            [
                "team (3)",
                "tier (2)",
                "team:payments (1)",
                "team:platform (2)",
                "tier:1 (1)",
                "tier:2 (1)"
            ]
        );
        assert_eq!(
            vocabulary(&store, "te", 100, false).await,
            ["team (3)", "team:payments (1)", "team:platform (2)"]
        );
        assert_eq!(
            vocabulary(&store, "team:pl", 100, false).await,
            ["team:platform (2)"]
        );
        assert_eq!(
            vocabulary(&store, "team=pa", 100, false).await,
            ["team:payments (1)"]
        );
        assert_eq!(
            vocabulary(&store, "team:PLAT", 100, false).await,
            ["team:platform (2)"],
            "a value in any case"
        );
        assert_eq!(vocabulary(&store, "t", 3, false).await.len(), 3);
        assert!(vocabulary(&store, "zone", 100, false).await.is_empty());
        // The search's built-in keys: names and environments.
        store.ensure_service("api", "staging").await.unwrap();
        assert_eq!(
            vocabulary(&store, "e", 100, true).await,
            ["env (4)", "env:prod (3)", "env:staging (1)"]
        );
        assert_eq!(
            vocabulary(&store, "service:a", 100, true).await,
            ["service:api (2)"]
        );
        assert!(vocabulary(&store, "e", 100, false).await.is_empty());
    }

    #[tokio::test]
    async fn a_declaration_replaces_only_its_own_keys_and_the_cli_may_not_edit_them() {
        let (_dir, store) = store().await;
        store.ensure_service("api", "prod").await.unwrap();
        store
            .set_service_tags("api", "prod", &pairs(&[("owner", "jane")]), &[])
            .await
            .unwrap();
        let apply = pairs(&[("team", "platform"), ("tier", "1")]);
        store
            .replace_source_tags("api", "prod", TagSource::Terraform, &apply)
            .await
            .unwrap();
        store
            .replace_source_tags(
                "api",
                "prod",
                TagSource::LaunchToml,
                &pairs(&[("lang", "rust")]),
            )
            .await
            .unwrap();
        // The CLI may not touch Terraform's keys: nothing is written.
        let conflicts = store
            .set_service_tags(
                "api",
                "prod",
                &pairs(&[("team", "other"), ("owner", "joe")]),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(summary(&conflicts), ["team=platform (terraform)"]);
        let tags = store.service_tags("api", "prod").await.unwrap();
        assert_eq!(
            summary(&tags),
            [
                "lang=rust (launch.toml)",
                "owner=jane (cli)",
                "team=platform (terraform)",
                "tier=1 (terraform)"
            ],
            "a refused edit writes nothing, not even its valid part"
        );
        let conflicts = store
            .set_service_tags("api", "prod", &[], &["lang".to_owned()])
            .await
            .unwrap();
        assert_eq!(summary(&conflicts), ["lang=rust (launch.toml)"]);
        // The next apply drops `tier` and takes `owner` over from the CLI;
        // the deploy's keys stay.
        store
            .replace_source_tags(
                "api",
                "prod",
                TagSource::Terraform,
                &pairs(&[("team", "platform"), ("owner", "ops")]),
            )
            .await
            .unwrap();
        let tags = store.service_tags("api", "prod").await.unwrap();
        assert_eq!(
            summary(&tags),
            [
                "lang=rust (launch.toml)",
                "owner=ops (terraform)",
                "team=platform (terraform)"
            ]
        );
        // An empty declaration removes what it owned, and nothing else.
        store
            .replace_source_tags("api", "prod", TagSource::Terraform, &[])
            .await
            .unwrap();
        let tags = store.service_tags("api", "prod").await.unwrap();
        assert_eq!(summary(&tags), ["lang=rust (launch.toml)"]);
    }

    #[tokio::test]
    async fn a_retired_service_loses_its_tags() {
        let (_dir, store) = fleet().await;
        assert_eq!(store.all_service_tags().await.unwrap().len(), 5);
        store.retire_service("api", "prod").await.unwrap();
        assert_eq!(matching(&store, "team:platform").await, ["db"]);
        let services: BTreeSet<String> = store
            .all_service_tags()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.service)
            .collect();
        assert_eq!(services, BTreeSet::from(["db".into(), "web".into()]));
        store.ensure_service("api", "prod").await.unwrap();
        assert!(store.service_tags("api", "prod").await.unwrap().is_empty());
        assert_eq!(vocabulary(&store, "tier:", 10, false).await, ["tier:2 (1)"]);
    }
}
