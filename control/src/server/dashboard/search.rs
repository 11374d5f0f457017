//! The services search. A query is terms separated by spaces, all of which
//! must hold (AND): `key:value` matches a tag (value by prefix), `key:`
//! any service with that tag key, and a bare word a service name,
//! environment or tag key by prefix. `service:` and `env:` are built-in
//! keys. Suggestions complete the last term: keys (`env:`), then
//! `key:value` pairs, from the stored tag vocabulary (`TagVocabulary`, with
//! the built-in keys), which a session may read when it may list every
//! service.

use launch_proto::{ServiceInfo, TagVocabularyRequest, VocabularyTerm};

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

/// Completions of the query's last term, from the stored tag vocabulary:
/// keys (`env:`) while the term has no `:`, then `key:value` pairs by value
/// prefix, each with how many services have it.
pub async fn suggest(
    dash: &Dash,
    session: &Session,
    query: &str,
) -> Result<Vec<Suggestion>, Failure> {
    let last = query.split_whitespace().last().unwrap_or_default();
    let last = if query.ends_with(' ') { "" } else { last };
    let last = last.to_lowercase();
    let terms = session
        .outcome(
            dash,
            dash.control()
                .tag_vocabulary(session.request(TagVocabularyRequest {
                    prefix: last.clone(),
                    limit: SUGGESTIONS as u32,
                    with_names: true,
                }))
                .await,
            false,
        )
        .await?
        .terms;
    Ok(complete(terms, &last))
}

/// The vocabulary's keys as `key:` while `last` has no `:` (they come
/// first, the pairs after them are dropped), else its pairs.
fn complete(terms: Vec<VocabularyTerm>, last: &str) -> Vec<Suggestion> {
    let keys = !last.contains(':');
    terms
        .into_iter()
        .filter(|term| term.term.contains(':') != keys)
        .take(SUGGESTIONS)
        .map(|term| Suggestion {
            value: if keys {
                format!("{}:", term.term)
            } else {
                term.term
            },
            count: term.services as usize,
        })
        .collect()
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
    fn keys_are_suggested_with_a_colon_and_pairs_only_after_one() {
        let terms = |terms: &[(&str, u32)]| -> Vec<VocabularyTerm> {
            terms
                .iter()
                .map(|(term, services)| VocabularyTerm {
                    term: term.to_string(),
                    services: *services,
                })
                .collect()
        };
        let shown = |suggestions: Vec<Suggestion>| -> Vec<String> {
            suggestions
                .into_iter()
                .map(|s| format!("{} {}", s.value, s.count))
                .collect()
        };
        // The vocabulary of `e`: keys first, then their pairs.
        let vocabulary = terms(&[("env", 3), ("env:prod", 2), ("env:staging", 1)]);
        assert_eq!(shown(complete(vocabulary.clone(), "e")), ["env: 3"]);
        assert_eq!(
            shown(complete(vocabulary[1..].to_vec(), "env:")),
            ["env:prod 2", "env:staging 1"]
        );
        assert!(complete(Vec::new(), "nope").is_empty());
    }
}
