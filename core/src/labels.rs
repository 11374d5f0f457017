//! The label set an agent registers with. Launch routes missions and secrets by
//! exactly two labels, `service-name` and `environment`; any other label is
//! carried along for display but never used for routing.

use std::collections::BTreeMap;
use std::fmt;

use crate::Error;
use crate::names::{EnvironmentName, ServiceName};

pub const SERVICE_NAME: &str = "service-name";
pub const ENVIRONMENT: &str = "environment";

/// Validated labels: the routing pair plus any extra `key=value` labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    pub service: ServiceName,
    pub environment: EnvironmentName,
    pub extra: BTreeMap<String, String>,
}

impl Labels {
    pub fn new(service: ServiceName, environment: EnvironmentName) -> Self {
        Labels {
            service,
            environment,
            extra: BTreeMap::new(),
        }
    }

    /// Parses `service-name=hello,environment=prod[,key=value…]`.
    pub fn parse(value: &str) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, val)) = pair.split_once('=') else {
                return Err(invalid(value, format!("{pair:?} is not key=value")));
            };
            let (key, val) = (key.trim(), val.trim());
            if map.insert(key.to_owned(), val.to_owned()).is_some() {
                return Err(invalid(value, format!("label {key:?} is given twice")));
            }
        }
        Self::from_map(&map).map_err(|err| match err {
            Error::InvalidLabels { reason, .. } => invalid(value, reason),
            other => other,
        })
    }

    /// Validates a label map as it arrives over the wire.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self, Error> {
        let shown = || {
            map.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let get = |key: &str| {
            map.get(key).ok_or_else(|| {
                invalid(
                    &shown(),
                    format!(
                        "label {key:?} is missing; give e.g. service-name=hello,environment=prod"
                    ),
                )
            })
        };
        let service = ServiceName::parse(get(SERVICE_NAME)?)?;
        let environment = EnvironmentName::parse(get(ENVIRONMENT)?)?;
        let mut extra = BTreeMap::new();
        for (key, val) in map {
            if key == SERVICE_NAME || key == ENVIRONMENT {
                continue;
            }
            let key_ok = !key.is_empty()
                && key.len() <= 63
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
            if !key_ok {
                return Err(invalid(
                    &shown(),
                    format!(
                        "label key {key:?} must be 1 to 63 letters, digits, '-', '_', '.' or '/'"
                    ),
                ));
            }
            if val.len() > 255 || val.chars().any(char::is_control) {
                return Err(invalid(
                    &shown(),
                    format!(
                        "label {key:?} has a value longer than 255 bytes or with control characters"
                    ),
                ));
            }
            extra.insert(key.clone(), val.clone());
        }
        Ok(Labels {
            service,
            environment,
            extra,
        })
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = self.extra.clone();
        map.insert(SERVICE_NAME.to_owned(), self.service.to_string());
        map.insert(ENVIRONMENT.to_owned(), self.environment.to_string());
        map
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .to_map()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn invalid(value: &str, reason: String) -> Error {
    Error::InvalidLabels {
        value: value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_routing_pair_and_extras() {
        let labels = Labels::parse("service-name=hello, environment=prod,region=eu").unwrap();
        assert_eq!(labels.service.as_str(), "hello");
        assert_eq!(labels.environment.as_str(), "prod");
        assert_eq!(labels.extra.get("region").map(String::as_str), Some("eu"));
        assert_eq!(
            labels.to_string(),
            "environment=prod,region=eu,service-name=hello"
        );
        assert_eq!(Labels::from_map(&labels.to_map()).unwrap(), labels);
    }

    #[test]
    fn refuses_incomplete_or_malformed_labels() {
        let cases = [
            ("service-name=hello", "\"environment\" is missing"),
            ("environment=prod", "\"service-name\" is missing"),
            ("service-name", "is not key=value"),
            (
                "service-name=a,service-name=b,environment=prod",
                "given twice",
            ),
            (
                "service-name=Hello,environment=prod",
                "invalid service name",
            ),
            ("service-name=a,environment=prod,bad key=1", "label key"),
        ];
        for (input, expected) in cases {
            let message = Labels::parse(input).unwrap_err().to_string();
            assert!(message.contains(expected), "{input:?}: {message}");
        }
    }
}
