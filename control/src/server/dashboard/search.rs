//! The services search. A query is terms separated by spaces, all of which
//! must hold (AND): `key:value` matches a tag (value by prefix), `key:`
//! any service with that tag key, and a bare word a service name,
//! environment or tag key by prefix. `service:` and `env:` are built-in
//! keys. Suggestions complete the last term: keys (`env:`), then
//! `key:value` pairs, from the services the session may list.

use std::collections::BTreeMap;

use launch_proto::{ListServicesRequest, ServiceInfo};

use super::session::Session;
use super::{Dash, Failure};

/// Most suggestions shown.
const SUGGESTIONS: usize = 12;

/// A service's tags as `(key, value)`, from the service as `ListServices`
/// or `GetService` answered.
pub fn tags_of(info: &ServiceInfo) -> Vec<(String, String)> {
    info.tags
        .iter()
        .map(|tag| (tag.key.clone(), tag.value.clone()))
        .collect()
}

enum Term {
    /// `key:value` (value a prefix; empty: any value).
    Pair(String, String),
    /// A bare word: a prefix of the name, environment or a tag key.
    Word(String),
}

pub struct Filter(Vec<Term>);

impl Filter {
    pub fn parse(query: &str) -> Self {
        Filter(
            query
                .split_whitespace()
                .map(|term| match term.split_once(':') {
                    Some((key, value)) => Term::Pair(key.to_lowercase(), value.to_lowercase()),
                    None => Term::Word(term.to_lowercase()),
                })
                .collect(),
        )
    }

    pub fn matches(&self, service: &str, environment: &str, own: &[(String, String)]) -> bool {
        self.0.iter().all(|term| match term {
            Term::Pair(key, value) => match key.as_str() {
                "service" => service.starts_with(value.as_str()),
                "env" | "environment" => environment.starts_with(value.as_str()),
                _ => own
                    .iter()
                    .any(|(k, v)| k == key && v.to_lowercase().starts_with(value.as_str())),
            },
            Term::Word(word) => {
                service.starts_with(word.as_str())
                    || environment.starts_with(word.as_str())
                    || own.iter().any(|(k, _)| k.starts_with(word.as_str()))
            }
        })
    }
}

/// One completion: what replaces the last term, and how many services have it.
pub struct Suggestion {
    pub value: String,
    pub count: usize,
}

/// Completions of the query's last term.
pub async fn suggest(
    dash: &Dash,
    session: &Session,
    query: &str,
) -> Result<Vec<Suggestion>, Failure> {
    let last = query.split_whitespace().last().unwrap_or_default();
    let last = if query.ends_with(' ') { "" } else { last };
    let services = session
        .outcome(
            dash,
            dash.control()
                .list_services(session.request(ListServicesRequest::default()))
                .await,
            false,
        )
        .await?
        .services;
    // Every (key, value) a service has, the built-in ones included.
    let mut pairs: BTreeMap<(String, String), usize> = BTreeMap::new();
    for info in &services {
        let target = info.target.clone().unwrap_or_default();
        *pairs
            .entry(("service".to_owned(), target.service.clone()))
            .or_default() += 1;
        *pairs
            .entry(("env".to_owned(), target.environment.clone()))
            .or_default() += 1;
        for pair in tags_of(info) {
            *pairs.entry(pair).or_default() += 1;
        }
    }
    Ok(complete(&pairs, last))
}

/// Keys while the term has no `:`, then `key:value` pairs by value prefix.
fn complete(pairs: &BTreeMap<(String, String), usize>, last: &str) -> Vec<Suggestion> {
    let last = last.to_lowercase();
    match last.split_once(':') {
        None => {
            let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
            for ((key, _), count) in pairs {
                if key.starts_with(&last) {
                    *keys.entry(key).or_default() += count;
                }
            }
            keys.into_iter()
                .take(SUGGESTIONS)
                .map(|(key, count)| Suggestion {
                    value: format!("{key}:"),
                    count,
                })
                .collect()
        }
        Some((key, prefix)) => pairs
            .iter()
            .filter(|((k, v), _)| k == key && v.to_lowercase().starts_with(prefix))
            .take(SUGGESTIONS)
            .map(|((k, v), count)| Suggestion {
                value: format!("{k}:{v}"),
                count: *count,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_anded_and_matched_by_prefix() {
        let tags = vec![("team".to_owned(), "core".to_owned())];
        let table = [
            ("", true),
            ("we", true),
            ("env:pr", true),
            ("env:staging", false),
            ("team:", true),
            ("team:co", true),
            ("team:co env:prod", true),
            ("team:co env:dev", false),
            ("owner:", false),
            ("te", true),
        ];
        for (query, want) in table {
            assert_eq!(
                Filter::parse(query).matches("web", "prod", &tags),
                want,
                "{query:?}"
            );
        }
    }

    #[test]
    fn suggestions_complete_keys_then_values() {
        let pairs: BTreeMap<(String, String), usize> = [
            (("env".to_owned(), "prod".to_owned()), 2),
            (("env".to_owned(), "staging".to_owned()), 1),
            (("team".to_owned(), "core".to_owned()), 1),
        ]
        .into();
        let values = |last: &str| -> Vec<String> {
            complete(&pairs, last)
                .into_iter()
                .map(|s| s.value)
                .collect()
        };
        assert_eq!(values("e"), ["env:"]);
        assert_eq!(values(""), ["env:", "team:"]);
        assert_eq!(values("env:"), ["env:prod", "env:staging"]);
        assert_eq!(values("env:s"), ["env:staging"]);
        assert!(values("nope").is_empty());
    }
}
