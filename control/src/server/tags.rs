//! Service tags on the wire: `SetServiceTags` (the CLI's `tag`/`untag`), the
//! tag filter and the search of `ListServices`, the tags in `ServiceInfo`, `TagVocabulary`
//! (the dashboard search's completions), and the check of
//! the provider's `tags` (`EnsureService`). Every tag is checked by
//! `launch_core::tags` before the store sees it (a deploy's `launch.toml`
//! `[tags]` by `ServiceConfig::parse`, and stored with the release in
//! `record_deploy`'s transaction); who owns a key is the store's rule
//! (`store::tags`).

use std::collections::{HashMap, HashSet};

use launch_core::tags::{TagFilter, check_key, check_tag};
use launch_proto::{
    ServiceTag, SetServiceTagsRequest, TagVocabularyRequest, TagVocabularyResponse, VocabularyTerm,
};
use tonic::Status;
use tracing::info;

use super::control_service::target;
use super::state::{State, internal};
use super::store::{ServiceRow, TagRow, TagSource};

/// Applies `SetServiceTags`; returns the service's row for the answer.
pub async fn set(state: &State, request: &SetServiceTagsRequest) -> Result<ServiceRow, Status> {
    let (service, environment) = target(request.target.as_ref())?;
    if request.set.is_empty() && request.remove.is_empty() {
        return Err(Status::invalid_argument(
            "no tags to set or remove: give key=value to set or a key to remove",
        ));
    }
    let set = checked(&request.set)?;
    for key in &request.remove {
        check_key(key).map_err(nothing_changed)?;
        if request.set.contains_key(key) {
            return Err(Status::invalid_argument(format!(
                "tag {key:?} is both set and removed: give it once; nothing was changed"
            )));
        }
    }
    let row = state
        .store
        .service(&service, &environment)
        .await
        .map_err(internal)?
        .filter(|row| !row.retired)
        .ok_or_else(|| {
            Status::not_found(format!(
                "no service {service} in {environment}: see `launch services`"
            ))
        })?;
    let conflicts = state
        .store
        .set_service_tags(&service, &environment, &set, &request.remove)
        .await
        .map_err(internal)?;
    if !conflicts.is_empty() {
        let each: Vec<String> = conflicts
            .iter()
            .map(|tag| {
                format!(
                    "tag {}={} is set by {}",
                    tag.key,
                    tag.value,
                    owner(tag.source)
                )
            })
            .collect();
        return Err(Status::failed_precondition(format!(
            "{}; nothing was changed",
            each.join("; ")
        )));
    }
    info!(service = %service, environment = %environment, set = set.len(), removed = request.remove.len(), "tags changed");
    Ok(row)
}

/// Checks a request's tags; every one must be valid or nothing is written.
pub fn checked(tags: &HashMap<String, String>) -> Result<Vec<(String, String)>, Status> {
    let mut pairs: Vec<(String, String)> = tags
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    pairs.sort();
    for (key, value) in &pairs {
        check_tag(key, value).map_err(nothing_changed)?;
    }
    Ok(pairs)
}

/// The services of `rows` whose tags pass every filter of `ListServices`.
pub async fn filter(
    state: &State,
    filters: &[String],
    mut rows: Vec<ServiceRow>,
) -> Result<Vec<ServiceRow>, Status> {
    if filters.is_empty() {
        return Ok(rows);
    }
    let filters = filters
        .iter()
        .map(|text| TagFilter::parse(text).map_err(|e| Status::invalid_argument(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let matching: HashSet<(String, String)> = state
        .store
        .services_matching_tags(&filters)
        .await
        .map_err(internal)?
        .into_iter()
        .collect();
    rows.retain(|row| matching.contains(&(row.service.clone(), row.environment.clone())));
    Ok(rows)
}

/// The search of `ListServices` (the dashboard's): terms separated by
/// spaces, all of which must hold (AND). `key:value` matches a tag (value by
/// prefix), `key:` any service with that tag key, and a bare word a service
/// name, environment or tag key by prefix. `service:` and `env:` are
/// built-in keys.
pub struct Search(Vec<Term>);

enum Term {
    /// `key:value` (value a prefix; empty: any value).
    Pair(String, String),
    /// A bare word: a prefix of the name, environment or a tag key.
    Word(String),
}

impl Search {
    pub fn parse(query: &str) -> Self {
        Search(
            query
                .split_whitespace()
                .map(|term| match term.split_once(':') {
                    Some((key, value)) => Term::Pair(key.to_lowercase(), value.to_lowercase()),
                    None => Term::Word(term.to_lowercase()),
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, service: &str, environment: &str, own: &[TagRow]) -> bool {
        self.0.iter().all(|term| match term {
            Term::Pair(key, value) => match key.as_str() {
                "service" => service.starts_with(value.as_str()),
                "env" | "environment" => environment.starts_with(value.as_str()),
                _ => own.iter().any(|tag| {
                    tag.key == *key && tag.value.to_lowercase().starts_with(value.as_str())
                }),
            },
            Term::Word(word) => {
                service.starts_with(word.as_str())
                    || environment.starts_with(word.as_str())
                    || own.iter().any(|tag| tag.key.starts_with(word.as_str()))
            }
        })
    }
}

/// The services of `rows` that `search` matches, with every service's tags
/// (read once, for the search and the answer).
pub async fn search(
    state: &State,
    search: &str,
    mut rows: Vec<ServiceRow>,
) -> Result<(Vec<ServiceRow>, HashMap<(String, String), Vec<TagRow>>), Status> {
    let tags = state.store.tags_by_service().await.map_err(internal)?;
    let search = Search::parse(search);
    if !search.is_empty() {
        rows.retain(|row| {
            let own = tags
                .get(&(row.service.clone(), row.environment.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            search.matches(&row.service, &row.environment, own)
        });
    }
    Ok((rows, tags))
}

/// `TagVocabulary`: the stored tags' completions of a prefix.
pub async fn vocabulary(
    state: &State,
    request: &TagVocabularyRequest,
) -> Result<TagVocabularyResponse, Status> {
    let limit = match request.limit {
        0 => 100,
        limit => limit.min(1000) as usize,
    };
    let terms = state
        .store
        .tag_vocabulary(&request.prefix, limit, request.with_names)
        .await
        .map_err(internal)?;
    Ok(TagVocabularyResponse {
        terms: terms
            .into_iter()
            .map(|(term, services)| VocabularyTerm {
                term,
                services: u32::try_from(services).unwrap_or(u32::MAX),
            })
            .collect(),
    })
}

/// A tag as `ServiceInfo` carries it.
pub fn service_tag(row: TagRow) -> ServiceTag {
    ServiceTag {
        key: row.key,
        value: row.value,
        source: row.source.label().to_owned(),
    }
}

/// Where a declared key must be changed instead.
fn owner(source: TagSource) -> &'static str {
    match source {
        TagSource::Terraform => "Terraform (the `tags` of its launch_service): change it there",
        TagSource::LaunchToml => {
            "the deployed launch.toml ([tags]): change it there and deploy again"
        }
        TagSource::Cli => "`launch services tag`",
    }
}

fn nothing_changed(error: launch_core::Error) -> Status {
    Status::invalid_argument(format!("{error}; nothing was changed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_are_anded_and_matched_by_prefix() {
        let tags = vec![TagRow {
            service: "web".to_owned(),
            environment: "prod".to_owned(),
            key: "team".to_owned(),
            value: "Core".to_owned(),
            source: TagSource::Cli,
        }];
        let table = [
            ("", true),
            ("we", true),
            ("env:pr", true),
            ("env:staging", false),
            ("service:w", true),
            ("service:x", false),
            ("team:", true),
            ("team:co", true),
            ("team:co env:prod", true),
            ("team:co env:dev", false),
            ("owner:", false),
            ("te", true),
            ("x", false),
        ];
        for (query, want) in table {
            assert_eq!(
                Search::parse(query).matches("web", "prod", &tags),
                want,
                "{query:?}"
            );
        }
    }
}
