//! Service tags on the wire: `SetServiceTags` (the CLI's `tag`/`untag`), the
//! tag filter and the search of `ListServices`, the tags in `ServiceInfo`, `TagVocabulary`
//! (the dashboard search's completions), and the check of
//! the provider's `tags` (`EnsureService`). Every tag is checked by
//! `launch_core::tags` before the store sees it (a deploy's `launch.toml`
//! `[tags]` by `ServiceConfig::parse`, and stored with the release in
//! `record_deploy`'s transaction); who owns a key is the store's rule
//! (`store::tags`).

use std::collections::HashMap;

use launch_core::tags::{TagFilter, check_key, check_tag};
use launch_proto::{
    ServiceTag, SetServiceTagsRequest, TagVocabularyRequest, TagVocabularyResponse, VocabularyTerm,
};
use tonic::Status;
use tracing::info;

use super::control_service::target;
use super::state::{State, internal};
use super::store::{SearchTerm, ServiceRow, TagRow, TagSource};

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

/// The tag filters of `ListServices` (`launch services --tag`), each checked.
pub fn filters(filters: &[String]) -> Result<Vec<TagFilter>, Status> {
    filters
        .iter()
        .map(|text| TagFilter::parse(text).map_err(|e| Status::invalid_argument(e.to_string())))
        .collect()
}

/// The search of `ListServices` (the dashboard's): terms separated by
/// spaces, all of which must hold (AND). `key:value` matches a tag (value by
/// prefix, in any case), `key:` any service with that tag key, and a bare
/// word a service name, environment or tag key by prefix. `service:` and
/// `env:` are built-in keys. The store evaluates it (`store::search`).
pub struct Search(Vec<SearchTerm>);

impl Search {
    pub fn parse(query: &str) -> Self {
        Search(
            query
                .split_whitespace()
                .map(|term| match term.split_once(':') {
                    Some((key, value)) => {
                        SearchTerm::Pair(key.to_lowercase(), value.to_lowercase())
                    }
                    None => SearchTerm::Word(term.to_lowercase()),
                })
                .collect(),
        )
    }

    pub fn terms(&self) -> &[SearchTerm] {
        &self.0
    }
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
