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
    if value.len() > MAX_LEN {
        return fail(format!("it is {} characters long; {RULE}", value.len()));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let hint = if bad.is_ascii_uppercase() {
            format!(" (try {:?})", value.to_ascii_lowercase())
        } else {
            String::new()
        };
        return fail(format!("{bad:?} is not allowed{hint}; {RULE}"));
    }
    if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        return fail(format!("it must start with a letter; {RULE}"));
    }
    if value.ends_with('-') {
        return fail(format!("it must not end with '-'; {RULE}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn project_name_joins_service_and_environment() {
        let service = ServiceName::parse("hello").unwrap();
        let environment = EnvironmentName::parse("prod").unwrap();
        assert_eq!(project_name(&service, &environment), "hello-prod");
    }
}
