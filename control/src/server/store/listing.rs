//! What `ListServices` shows of each service beside its row, read for many
//! services at once: each table (missions, releases, health, front-door
//! routes, previews, tags) is read once for the whole list, so a listing
//! costs the same handful of queries for one service or a thousand
//! (connected agents and their hosts' compose included, from their rows). The
//! answers are the per-service queries' ([`Store::newest_mission`],
//! [`Store::newest_url`], …) for every service; a test over the wire holds
//! `ListServices` to `GetService`.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::missions::{mission_row, release_row};
use super::{HealthRow, MissionRow, ReleaseRow, Result, ServiceRow, Store, TagRow, TagSource};

/// One service's details as the per-service queries answer them.
#[derive(Clone, Debug, Default)]
pub struct ServiceDetails {
    /// The environment's newest mission (not a preview's, not retired).
    pub newest_mission: Option<MissionRow>,
    /// The URL of the newest such mission that left one.
    pub newest_url: Option<String>,
    pub health: Option<HealthRow>,
    /// The newest route report of the service's agents that are not revoked.
    pub front_door_report: Option<Vec<u8>>,
    pub current_release: Option<ReleaseRow>,
    /// How many previews are live.
    pub previews: usize,
    /// By key, in byte order.
    pub tags: Vec<TagRow>,
    pub host_address: String,
    pub fqdn: String,
    /// Its agents connected to any replica (`agent_sessions`).
    pub agents_connected: usize,
    /// The compose its host runs, as its agent last said (`agent_sessions`).
    pub host_compose: Option<String>,
}

/// Most service names [`Store::tags_of_services`] binds in one query
/// (SQLite allows 32,766 parameters, PostgreSQL 65,535).
const MOST_NAMES: usize = 1000;

/// A service by name and environment.
pub type Key = (String, String);

fn key_of(row: &sqlx::any::AnyRow) -> Key {
    (row.get("service"), row.get("environment"))
}

impl Store {
    /// One service's details, a query per table.
    pub async fn service_details(&self, row: &ServiceRow) -> Result<ServiceDetails> {
        let (service, environment) = (row.service.as_str(), row.environment.as_str());
        let current_release = match &row.current_release_id {
            Some(id) => self.release(id).await?,
            None => None,
        };
        Ok(ServiceDetails {
            newest_mission: self.newest_mission(service, environment).await?,
            newest_url: self.newest_url(service, environment).await?,
            health: self.service_health(service, environment).await?,
            front_door_report: self.front_door_routes(service, environment).await?,
            current_release,
            previews: self.preview_names(service, environment).await?.len(),
            tags: {
                // Byte order, as the listing sorts (a PostgreSQL collation may not).
                let mut tags = self.service_tags(service, environment).await?;
                tags.sort_by(|a, b| a.key.cmp(&b.key));
                tags
            },
            host_address: self.host_address(service, environment).await?,
            fqdn: self.fqdn(service, environment).await?,
            agents_connected: self.agents_connected(service, environment).await?,
            host_compose: self.host_compose(service, environment).await?,
        })
    }

    /// The details of every service of `rows`, in their order: the same
    /// answers as [`Store::service_details`] for each, one query per table.
    /// `rows` must be fresh (the address and name are taken from them).
    pub async fn services_details(&self, rows: &[ServiceRow]) -> Result<Vec<ServiceDetails>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let tags = self.tags_by_service().await?;
        self.services_details_with(rows, tags).await
    }

    /// [`Store::services_details`] with every service's tags already read
    /// ([`Store::tags_by_service`], e.g. to search them first).
    pub async fn services_details_with(
        &self,
        rows: &[ServiceRow],
        mut tags: HashMap<Key, Vec<TagRow>>,
    ) -> Result<Vec<ServiceDetails>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut newest: HashMap<Key, MissionRow> = sqlx::query(
            "SELECT m.* FROM missions m JOIN (
                 SELECT service, environment, MAX(id) AS id FROM missions
                 WHERE retired = 0 AND preview = '' GROUP BY service, environment
             ) n ON n.id = m.id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| (key_of(row), mission_row(row)))
        .collect();
        let mut urls: HashMap<Key, String> = sqlx::query(
            "SELECT m.service, m.environment, m.url FROM missions m JOIN (
                 SELECT service, environment, MAX(id) AS id FROM missions
                 WHERE retired = 0 AND preview = '' AND url != '' GROUP BY service, environment
             ) n ON n.id = m.id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| (key_of(row), row.get("url")))
        .collect();
        let mut health: HashMap<Key, HealthRow> = sqlx::query(
            "SELECT service, environment, release_id, degraded, message FROM service_health",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let health = HealthRow {
                release_id: row.get("release_id"),
                degraded: row.get::<i64, _>("degraded") != 0,
                message: row.get("message"),
            };
            (key_of(row), health)
        })
        .collect();
        // Oldest first, so the newest report of each service is the one kept.
        let mut reports: HashMap<Key, Vec<u8>> = sqlx::query(
            "SELECT f.service, f.environment, f.report FROM front_door_routes f
             JOIN agents a ON a.id = f.agent_id WHERE a.revoked = 0 ORDER BY f.seq",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| (key_of(row), row.get("report")))
        .collect();
        let releases: HashMap<String, ReleaseRow> = sqlx::query(
            "SELECT r.* FROM releases r JOIN services s ON s.current_release_id = r.id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let release = release_row(row);
            (release.id.clone(), release)
        })
        .collect();
        let previews: HashMap<Key, i64> = sqlx::query(
            "SELECT service, environment, COUNT(*) AS previews FROM previews GROUP BY service, environment",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| (key_of(row), row.get("previews")))
        .collect();
        let connected: HashMap<Key, i64> = sqlx::query(&format!(
            "SELECT a.service, a.environment, COUNT(*) AS agents FROM agents a WHERE {} GROUP BY a.service, a.environment",
            self.connected_sql("a")
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| (key_of(row), row.get("agents")))
        .collect();
        let mut composes = self.host_composes().await?;
        Ok(rows
            .iter()
            .map(|row| {
                let key = (row.service.clone(), row.environment.clone());
                ServiceDetails {
                    agents_connected: connected.get(&key).copied().unwrap_or_default() as usize,
                    host_compose: composes.remove(&key),
                    newest_mission: newest.remove(&key),
                    newest_url: urls.remove(&key),
                    health: health.remove(&key),
                    front_door_report: reports.remove(&key),
                    current_release: row
                        .current_release_id
                        .as_ref()
                        .and_then(|id| releases.get(id).cloned()),
                    previews: previews.get(&key).copied().unwrap_or_default() as usize,
                    tags: tags.remove(&key).unwrap_or_default(),
                    host_address: row.host_address.clone(),
                    fqdn: row.fqdn.clone(),
                }
            })
            .collect())
    }

    /// Every service's tags, by key in byte order.
    pub async fn tags_by_service(&self) -> Result<HashMap<Key, Vec<TagRow>>> {
        self.joined_tags(&[]).await
    }

    /// The tags of the services of `rows` (a page of the listing), by key
    /// in byte order: read for those services' names only (every service's
    /// when there are more names than one query should bind).
    pub async fn tags_of_services(&self, rows: &[ServiceRow]) -> Result<HashMap<Key, Vec<TagRow>>> {
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        let named = if rows.len() <= MOST_NAMES { rows } else { &[] };
        let mut tags = self.joined_tags(named).await?;
        let wanted: HashSet<(&str, &str)> = rows
            .iter()
            .map(|row| (row.service.as_str(), row.environment.as_str()))
            .collect();
        tags.retain(|(service, environment), _| {
            wanted.contains(&(service.as_str(), environment.as_str()))
        });
        Ok(tags)
    }

    /// Tags joined into one row per service, of every service or of the
    /// names of `rows`.
    async fn joined_tags(&self, rows: &[ServiceRow]) -> Result<HashMap<Key, Vec<TagRow>>> {
        let mut names: Vec<&str> = rows.iter().map(|row| row.service.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let only = if names.is_empty() {
            String::new()
        } else {
            let placeholders: Vec<String> =
                (0..names.len()).map(|i| format!("${}", i + 2)).collect();
            format!("WHERE service IN ({})", placeholders.join(", "))
        };
        // One row per service, its tags joined (`key value source` lines):
        // a thousand rows instead of ten thousand is most of a listing's
        // time. A checked tag has neither a space nor a line break.
        let sql = format!(
            "SELECT service, environment, {}(key || ' ' || value || ' ' || source, $1) AS tags
             FROM service_tags {only} GROUP BY service, environment",
            self.engine.string_agg(),
        );
        let mut query = sqlx::query(&sql).bind("\n");
        for name in names {
            query = query.bind(name);
        }
        Ok(query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let (service, environment): Key = key_of(row);
                let joined: String = row.get("tags");
                let mut tags: Vec<TagRow> = joined
                    .split('\n')
                    .filter_map(|line| {
                        let mut fields = line.splitn(3, ' ');
                        Some(TagRow {
                            service: service.clone(),
                            environment: environment.clone(),
                            key: fields.next()?.to_owned(),
                            value: fields.next()?.to_owned(),
                            source: TagSource::from_label(fields.next()?),
                        })
                    })
                    .collect();
                tags.sort_by(|a, b| a.key.cmp(&b.key));
                ((service, environment), tags)
            })
            .collect())
    }
}
