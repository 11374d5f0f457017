//! The services search's suggestions. A query is terms separated by
//! spaces, all of which must hold (AND), applied by `ListServices` in the
//! control plane (`tags::Search`): `key:value` matches a tag (value by
//! prefix), `key:` any service with that tag key, and a bare word a service
//! name, environment or tag key by prefix. Suggestions complete the last term: keys (`env:`), then
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
