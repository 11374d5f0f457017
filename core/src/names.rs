//! Service and environment names. Both end up in DNS records
//! (`<name>-<env>.<domain>`), compose project names (`<svc>-<env>`), directory
//! names under `/var/lib/launch` and cloud tags, so both follow the strictest
//! of those: an RFC 1123 DNS label in lower case.

use std::fmt;

use crate::Error;

/// The longest a DNS label may be.
pub const MAX_LEN: usize = 63;

/// A validated service name, e.g. `hello` or `librechat`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

/// A validated environment name, e.g. `prod` or `staging`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvironmentName(String);

impl ServiceName {
    pub fn parse(value: &str) -> Result<Self, Error> {
        check_label("service name", value).map(|()| ServiceName(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EnvironmentName {
    pub fn parse(value: &str) -> Result<Self, Error> {
        check_label("environment", value).map(|()| EnvironmentName(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for EnvironmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated preview name, e.g. `pr-123`: one DNS label, because a
/// preview answers at `<preview>.<name>` for each name of its service (one
/// label under the service's name is what a wildcard record `*.<fqdn>` and a
/// certificate for that exact name both cover).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PreviewName(String);

impl PreviewName {
    pub fn parse(value: &str) -> Result<Self, Error> {
        check_label("preview name", value).map(|()| PreviewName(value.to_owned()))
    }

    /// The preview of pull request `number`: `pr-<number>`.
    pub fn for_pull_request(number: u64) -> Self {
        PreviewName(format!("pr-{number}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PreviewName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The compose project name of a service in an environment: `<svc>-<env>`.
pub fn project_name(service: &ServiceName, environment: &EnvironmentName) -> String {
    format!("{service}-{environment}")
}

fn check_label(what: &'static str, value: &str) -> Result<(), Error> {
    let fail = |reason: String| {
        Err(Error::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        })
    };
    const RULE: &str = "use 1 to 63 lower-case letters, digits and '-', starting with a letter and not ending with '-'";
    if value.is_empty() {
        return fail(format!("it is empty; {RULE}"));
    }
    let hint = match suggest(value) {
        Some(name) => format!(" (try {name:?})"),
        None => String::new(),
    };
    if value.len() > MAX_LEN {
        return fail(format!(
            "it is {} characters long{hint}; {RULE}",
            value.len()
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return fail(format!("{bad:?} is not allowed{hint}; {RULE}"));
    }
    if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        return fail(format!("it must start with a letter{hint}; {RULE}"));
    }
    if value.ends_with('-') {
        return fail(format!("it must not end with '-'{hint}; {RULE}"));
    }
    Ok(())
}

/// A valid name close to `value` (lower case, `_`, `.` and spaces as `-`, no
/// leading non-letters, no trailing `-`, at most 63 characters), or None when
/// nothing sensible is left. Never suggests an invalid name: the result is
/// checked by the same rule it is offered for.
fn suggest(value: &str) -> Option<String> {
    let mut name = String::new();
    for c in value.chars() {
        let c = match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            '_' | '.' | ' ' => '-',
            _ => continue,
        };
        if c == '-' && (name.is_empty() || name.ends_with('-')) {
            continue;
        }
        if name.is_empty() && !c.is_ascii_lowercase() {
            continue;
        }
        name.push(c);
    }
    name.truncate(MAX_LEN);
    let name = name.trim_end_matches('-').to_owned();
    let valid = !name.is_empty()
        && name != value
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_name_is_one_dns_label() {
        assert_eq!(PreviewName::parse("pr-123").unwrap().as_str(), "pr-123");
        assert_eq!(PreviewName::for_pull_request(7).as_str(), "pr-7");
        for bad in ["", "pr.1", "PR-1", "pr_1", "-pr", &"p".repeat(64)] {
            let error = PreviewName::parse(bad).unwrap_err().to_string();
            assert!(error.contains("preview name"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "hello", "librechat", "api-v2", &"a".repeat(63)] {
            ServiceName::parse(ok).unwrap();
            EnvironmentName::parse(ok).unwrap();
        }
    }

    #[test]
    fn refuses_names_that_are_not_dns_labels_and_says_why() {
        let cases = [
            ("", "it is empty"),
            ("../x", "'.' is not allowed"),
            ("Hello", "'H' is not allowed (try \"hello\")"),
            ("a_b", "'_' is not allowed"),
            ("1abc", "must start with a letter"),
            ("abc-", "must not end with '-'"),
            ("a b", "' ' is not allowed"),
            ("x;rm -rf /", "';' is not allowed"),
        ];
        for (input, expected) in cases {
            let message = ServiceName::parse(input).unwrap_err().to_string();
            assert!(message.contains(expected), "{input:?}: {message}");
            assert!(
                message.contains("lower-case letters"),
                "{input:?}: {message}"
            );
        }
        let long = "a".repeat(64);
        let message = ServiceName::parse(&long).unwrap_err().to_string();
        assert!(message.contains("64 characters long"), "{message}");
    }

    /// The `X` of a message's `(try "X")`, if it has one.
    fn hint_of(message: &str) -> Option<String> {
        let start = message.find("(try \"")? + "(try \"".len();
        let end = start + message[start..].find('"')?;
        Some(message[start..end].to_owned())
    }

    #[test]
    fn hints_name_a_valid_label_for_the_examples_in_the_issue() {
        let cases = [
            ("Bad_Name", Some("bad-name")),
            ("Hello", Some("hello")),
            ("my.app", Some("my-app")),
            ("1abc", Some("abc")),
            ("abc-", Some("abc")),
            ("__", None),
            ("123", None),
        ];
        for (input, expected) in cases {
            let message = ServiceName::parse(input).unwrap_err().to_string();
            assert_eq!(
                hint_of(&message).as_deref(),
                expected,
                "{input:?}: {message}"
            );
        }
    }

    proptest::proptest! {
        /// For any input, a hint, when given, passes validation.
        #[test]
        fn every_hint_is_a_valid_name(value in "\\PC{0,80}") {
            if let Err(err) = ServiceName::parse(&value)
                && let Some(hint) = hint_of(&err.to_string())
            {
                proptest::prop_assert!(ServiceName::parse(&hint).is_ok(), "{value:?} -> {hint:?}");
            }
        }

        /// Names that are nearly right (the mistakes people make: capitals,
        /// `_`, `.`, spaces, a leading digit or dash, a trailing dash, one
        /// character too many) always get a hint, and it is valid.
        #[test]
        fn nearly_right_names_get_a_valid_hint(value in "[0-9_-]{0,3}[a-zA-Z][a-zA-Z0-9_. -]{0,70}") {
            let invalid = ServiceName::parse(&value).is_err();
            if invalid {
                let message = ServiceName::parse(&value).unwrap_err().to_string();
                let hint = hint_of(&message);
                proptest::prop_assert!(hint.is_some(), "{value:?}: no hint in {message}");
                let hint = hint.unwrap();
                proptest::prop_assert!(ServiceName::parse(&hint).is_ok(), "{value:?} -> {hint:?}");
            }
        }
    }

    #[test]
    fn project_name_joins_service_and_environment() {
        let service = ServiceName::parse("hello").unwrap();
        let environment = EnvironmentName::parse("prod").unwrap();
        assert_eq!(project_name(&service, &environment), "hello-prod");
    }
}
