//! Service tags: `key=value` pairs a service carries (from the provider's
//! `tags`, `launch services tag` and `launch.toml` `[tags]`), and the filters
//! that select services by them (`launch services --tag`, the dashboard's
//! search). The one place that says what a valid tag is: the CLI, the control
//! plane and the provider all call [`check_tag`].
//!
//! A key is 1 to 63 ASCII letters, digits, `-`, `_`, `.` and `/`, starting
//! with a letter or digit; a value is 1 to 128 ASCII letters, digits and
//! `-_./:@+`. Neither may hold `=` or whitespace, so `key=value`,
//! `key:value` and a search line split without quoting. Keys and values are
//! compared case-sensitively.

use std::collections::BTreeMap;

use crate::Error;

/// The longest a tag key may be.
pub const MAX_KEY_LEN: usize = 63;
/// The longest a tag value may be.
pub const MAX_VALUE_LEN: usize = 128;

const KEY_RULE: &str =
    "a tag key is 1 to 63 letters, digits, '-', '_', '.' and '/', starting with a letter or digit";
const VALUE_RULE: &str =
    "a tag value is 1 to 128 letters, digits and '-', '_', '.', '/', ':', '@', '+'";

/// Checks a key, e.g. `team` or `cost-center`.
pub fn check_key(key: &str) -> Result<(), Error> {
    let fail = |reason: String| Err(invalid(key, &format!("{reason}; {KEY_RULE}")));
    if key.is_empty() {
        return fail("the key is empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return fail(format!("the key is {} characters long", key.len()));
    }
    if let Some(bad) = key.chars().find(|c| !key_char(*c)) {
        return fail(format!("{bad:?} is not allowed in a key"));
    }
    if !key.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return fail("the key must start with a letter or digit".into());
    }
    Ok(())
}

/// Checks one tag, `key` and `value`.
pub fn check_tag(key: &str, value: &str) -> Result<(), Error> {
    check_key(key)?;
    let tag = format!("{key}={value}");
    let fail = |reason: String| Err(invalid(&tag, &format!("{reason}; {VALUE_RULE}")));
    if value.is_empty() {
        return fail("the value is empty".into());
    }
    if value.len() > MAX_VALUE_LEN {
        return fail(format!("the value is {} characters long", value.len()));
    }
    if let Some(bad) = value.chars().find(|c| !value_char(*c)) {
        return fail(format!("{bad:?} is not allowed in a value"));
    }
    Ok(())
}

/// Checks every tag of a map, reporting the first bad one.
pub fn check_tags<'a>(
    tags: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), Error> {
    tags.into_iter()
        .try_for_each(|(key, value)| check_tag(key, value))
}

/// Parses `key=value` (as `launch services tag` takes it) into a checked pair.
pub fn parse_assignment(text: &str) -> Result<(String, String), Error> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(invalid(
            text,
            "expected key=value, e.g. team=platform (remove a tag with `launch services untag`)",
        ));
    };
    check_tag(key, value)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// One condition on a service's tags: it has `key` (any value), or `key`
/// with `value`. With `prefix`, the last term of a search as typed: a key
/// that starts with `key` (bare), or `key` with a value that starts with
/// `value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagFilter {
    pub key: String,
    pub value: Option<String>,
    pub prefix: bool,
}

impl TagFilter {
    /// An exact filter: `key`, `key=value` or `key:value`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let filter = Self::parse_term(text, false)?;
        if filter.value.as_deref() == Some("") {
            return Err(invalid(
                text,
                "the value after the separator is empty: write key (any value) or key=value",
            ));
        }
        Ok(filter)
    }

    fn parse_term(text: &str, prefix: bool) -> Result<Self, Error> {
        let (key, value) = match text.find(['=', ':']) {
            Some(at) => (&text[..at], Some(&text[at + 1..])),
            None => (text, None),
        };
        if prefix && key.is_empty() {
            return Err(invalid(text, "a search term starts with a tag key"));
        }
        if prefix {
            // A key or value being typed is checked for its characters only.
            if let Some(bad) = key.chars().find(|c| !key_char(*c)) {
                return Err(invalid(
                    text,
                    &format!("{bad:?} is not allowed in a key; {KEY_RULE}"),
                ));
            }
            if let Some(bad) = value.unwrap_or("").chars().find(|c| !value_char(*c)) {
                return Err(invalid(
                    text,
                    &format!("{bad:?} is not allowed in a value; {VALUE_RULE}"),
                ));
            }
        } else {
            check_key(key)?;
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                check_tag(key, value)?;
            }
        }
        Ok(TagFilter {
            key: key.to_owned(),
            value: value.map(str::to_owned),
            prefix,
        })
    }

    /// Whether a service with these tags passes the filter.
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        match (&self.value, self.prefix) {
            (None, false) => tags.contains_key(&self.key),
            (None, true) => tags.keys().any(|key| key.starts_with(&self.key)),
            (Some(value), false) => tags.get(&self.key) == Some(value),
            (Some(value), true) => tags.get(&self.key).is_some_and(|v| v.starts_with(value)),
        }
    }
}

/// A search line as the dashboard's box holds it: terms separated by
/// whitespace, all of which must match (AND). Every term is exact but the
/// last, which is matched as a prefix unless the line ends in whitespace
/// (the user has finished typing it).
pub fn parse_search(line: &str) -> Result<Vec<TagFilter>, Error> {
    let terms: Vec<&str> = line.split_whitespace().collect();
    let typing = !line.ends_with(char::is_whitespace);
    terms
        .iter()
        .enumerate()
        .map(|(index, term)| {
            if typing && index + 1 == terms.len() {
                TagFilter::parse_term(term, true)
            } else {
                TagFilter::parse(term)
            }
        })
        .collect()
}

/// Whether a service with these tags passes every filter (AND).
pub fn matches_all(filters: &[TagFilter], tags: &BTreeMap<String, String>) -> bool {
    filters.iter().all(|filter| filter.matches(tags))
}

fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '@' | '+')
}

fn invalid(tag: &str, reason: &str) -> Error {
    Error::InvalidTag {
        tag: tag.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_the_tags_people_write() {
        for (key, value) in [
            ("team", "platform"),
            ("cost-center", "4711"),
            ("Owner", "jane@example.com"),
            ("k8s.io/role", "arn:aws:iam::1:role/x"),
            ("tier", "v1.2+build"),
            (&"k".repeat(63), &"v".repeat(128)),
        ] {
            check_tag(key, value).unwrap();
        }
    }

    #[test]
    fn refuses_bad_tags_naming_the_tag_and_the_rule() {
        let cases = [
            ("", "x", "the key is empty"),
            ("team name", "x", "' ' is not allowed in a key"),
            ("team:a", "x", "':' is not allowed in a key"),
            ("-team", "x", "must start with a letter or digit"),
            (&"k".repeat(64), "x", "64 characters long"),
            ("team", "", "the value is empty"),
            ("team", "a b", "' ' is not allowed in a value"),
            ("team", "a=b", "'=' is not allowed in a value"),
            ("team", "é", "'é' is not allowed in a value"),
            ("team", &"v".repeat(129), "129 characters long"),
        ];
        for (key, value, expected) in cases {
            let message = check_tag(key, value).unwrap_err().to_string();
            assert!(message.contains(expected), "{key:?}={value:?}: {message}");
            assert!(message.starts_with("invalid tag \""), "{message}");
            assert!(message.contains("a tag "), "names the rule: {message}");
        }
    }

    #[test]
    fn an_assignment_is_key_equals_value() {
        assert_eq!(
            parse_assignment("team=platform").unwrap(),
            ("team".into(), "platform".into())
        );
        let message = parse_assignment("team").unwrap_err().to_string();
        assert!(message.contains("expected key=value"), "{message}");
        assert!(parse_assignment("team=").is_err());
    }

    #[test]
    fn exact_filters_match_keys_and_pairs() {
        let service = tags(&[("team", "platform"), ("tier", "1")]);
        for (filter, expected) in [
            ("team", true),
            ("team=platform", true),
            ("team:platform", true),
            ("team=plat", false),
            ("tea", false),
            ("region", false),
        ] {
            let parsed = TagFilter::parse(filter).unwrap();
            assert_eq!(parsed.matches(&service), expected, "{filter}");
        }
        assert!(TagFilter::parse("team=").is_err());
        assert!(TagFilter::parse("bad key").is_err());
    }

    #[test]
    fn a_search_is_and_with_the_last_term_a_prefix_while_typed() {
        let service = tags(&[("team", "platform"), ("tier", "1")]);
        for (line, expected) in [
            ("team:plat", true),
            ("team:plat ", false),
            ("tier:1 team:p", true),
            ("tier:2 team:p", false),
            ("tea", true),
            ("tea ", false),
            ("team:", true),
            ("", true),
            ("region", false),
        ] {
            let filters = parse_search(line).unwrap();
            assert_eq!(matches_all(&filters, &service), expected, "{line:?}");
        }
        assert!(parse_search("tier:1 bad!").is_err());
    }
}
