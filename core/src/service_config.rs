//! `launch.toml`, the optional file beside a service's compose file that says
//! what compose cannot: the service's name, the host port it answers on (for
//! its URL) and the HTTP probe that gates a deploy.
//!
//! ```toml
//! name = "hello"          # default: the directory name
//! port = 8080             # host port the service answers on
//! [health]
//! path = "/healthz"       # GET http://127.0.0.1:<port><path> must answer 2xx or 3xx
//! timeout = "60s"         # how long the health gate waits (default 60s)
//! interval = "100ms"   # how often the gate looks (default 100ms)
//! settle = "5s"         # how long every container must stay up (default 5s)
//! [env]                 # non-secret variables for compose interpolation (.env)
//! LOG_LEVEL = "info"
//! [http]                  # what the front door routes (see `http`)
//! hosts = ["hello.example.com"]
//! [tags]                  # the service's tags (see `crate::tags`), set by each deploy
//! team = "platform"
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::Error;
use crate::names::ServiceName;

mod http;
pub use http::{Http, compose_services, is_host_name};

pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the gate looks again: often, since every poll is cheap and a
/// deploy waits on the first one that passes.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_millis(100);
/// How long every container must stay up before a release counts as healthy.
pub const DEFAULT_HEALTH_SETTLE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceConfig {
    pub name: Option<ServiceName>,
    pub port: Option<u16>,
    pub health: Health,
    /// `[env]`: variables written to the release's `.env` for compose.
    pub env: std::collections::BTreeMap<String, String>,
    /// The `[http]` table: what the front door routes (`None`: no table).
    pub http: Option<Http>,
    /// `[tags]`: the service's tags; each deploy of the environment makes the
    /// keys launch.toml owns exactly these.
    pub tags: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The HTTP probe path; `None` means compose healthchecks alone gate the deploy.
    pub path: Option<String>,
    /// The port probed; defaults to the service's `port`.
    pub port: Option<u16>,
    pub timeout: Duration,
    pub interval: Duration,
    /// Containers must stay up (no exit, no restart) this long after they are ready.
    pub settle: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            path: None,
            port: None,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            interval: DEFAULT_HEALTH_INTERVAL,
            settle: DEFAULT_HEALTH_SETTLE,
        }
    }
}

impl Health {
    /// The port the HTTP probe targets, if there is a probe.
    pub fn probe_port(&self, service_port: Option<u16>) -> Option<u16> {
        self.path.as_ref().and(self.port.or(service_port))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    http: Option<http::RawHttp>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: Option<String>,
    port: Option<u16>,
    timeout: Option<String>,
    interval: Option<String>,
    settle: Option<String>,
}

impl ServiceConfig {
    /// Parses the text of a `launch.toml`; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let fail = |message: String| Error::Config {
            path: path.to_owned(),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| fail(e.message().to_owned()))?;
        let name = raw
            .name
            .as_deref()
            .map(ServiceName::parse)
            .transpose()
            .map_err(|e| fail(e.to_string()))?;
        let duration = |field: &str, value: Option<&str>, default: Duration| {
            let Some(value) = value else {
                return Ok(default);
            };
            let parsed = humantime::parse_duration(value).map_err(|e| {
                fail(format!(
                    "health.{field} = {value:?}: {e}; write e.g. \"60s\" or \"2m\""
                ))
            })?;
            if parsed < Duration::from_millis(100) || parsed > Duration::from_secs(3600) {
                return Err(fail(format!(
                    "health.{field} = {value:?} is out of range; use between 100ms and 1h"
                )));
            }
            Ok(parsed)
        };
        let health = Health {
            timeout: duration(
                "timeout",
                raw.health.timeout.as_deref(),
                DEFAULT_HEALTH_TIMEOUT,
            )?,
            interval: duration(
                "interval",
                raw.health.interval.as_deref(),
                DEFAULT_HEALTH_INTERVAL,
            )?,
            settle: duration(
                "settle",
                raw.health.settle.as_deref(),
                DEFAULT_HEALTH_SETTLE,
            )?,
            port: raw.health.port,
            path: raw.health.path,
        };
        for name in raw.env.keys() {
            let valid = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.chars().next().is_some_and(|c| !c.is_ascii_digit());
            if !valid {
                return Err(fail(format!(
                    "env.{name}: a variable name uses letters, digits and '_' and does not start with a digit"
                )));
            }
        }
        for (key, value) in &raw.tags {
            crate::tags::check_tag(key, value).map_err(|e| fail(format!("tags.{key}: {e}")))?;
        }
        if let Some(path) = &health.path {
            if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(fail(format!(
                    "health.path = {path:?} must start with '/' and contain no spaces, e.g. \"/healthz\""
                )));
            }
            // With [http] the front door probes the container port itself.
            if health.port.or(raw.port).is_none() && raw.http.is_none() {
                return Err(fail(
                    "health.path is set but no port is known: set `port` (or `health.port`) to the host port the service publishes".to_owned(),
                ));
            }
        }
        for (field, port) in [("port", raw.port), ("health.port", health.port)] {
            if port == Some(0) {
                return Err(fail(format!(
                    "{field} = 0 is not a port; use the host port the service publishes"
                )));
            }
        }
        let http = raw
            .http
            .map(http::RawHttp::check)
            .transpose()
            .map_err(fail)?;
        Ok(ServiceConfig {
            name,
            port: raw.port,
            health,
            env: raw.env,
            http,
            tags: raw.tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServiceConfig, String> {
        ServiceConfig::parse(text, Path::new("launch.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_means_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, ServiceConfig::default());
        assert_eq!(config.health.timeout, Duration::from_secs(60));
    }

    #[test]
    fn full_file_is_typed() {
        let config = parse(
            "name = \"hello\"\nport = 8080\n[health]\npath = \"/healthz\"\ntimeout = \"2m\"\ninterval = \"500ms\"\n",
        )
        .unwrap();
        assert_eq!(config.name.unwrap().as_str(), "hello");
        assert_eq!(config.port, Some(8080));
        assert_eq!(config.health.path.as_deref(), Some("/healthz"));
        assert_eq!(config.health.probe_port(config.port), Some(8080));
        assert_eq!(config.health.timeout, Duration::from_secs(120));
        assert_eq!(config.health.interval, Duration::from_millis(500));
        assert_eq!(config.health.settle, DEFAULT_HEALTH_SETTLE);
        let config = parse("[health]\nsettle = \"1s\"\n[env]\nLOG_LEVEL = \"debug\"\n").unwrap();
        assert_eq!(config.health.settle, Duration::from_secs(1));
        assert_eq!(config.env["LOG_LEVEL"], "debug");
    }

    #[test]
    fn the_http_table_is_typed() {
        let config =
            parse("[http]\nservice = \"web\"\nport = 8080\nhosts = [\"Hello.Test\"]\n").unwrap();
        assert_eq!(
            config.http,
            Some(Http {
                service: Some("web".into()),
                port: Some(8080),
                hosts: vec!["hello.test".into()],
            })
        );
        assert_eq!(parse("").unwrap().http, None);
    }

    #[test]
    fn the_tags_table_is_checked_by_the_one_tag_rule() {
        let config = parse("[tags]\nteam = \"platform\"\n\"cost-center\" = \"4711\"\n").unwrap();
        assert_eq!(config.tags["team"], "platform");
        assert_eq!(config.tags["cost-center"], "4711");
        assert!(parse("").unwrap().tags.is_empty());
    }

    #[test]
    fn bad_files_say_what_to_fix() {
        let cases = [
            ("nmae = \"x\"", "unknown field `nmae`"),
            ("name = \"Hello\"", "invalid service name"),
            (
                "port = 8080\n[health]\npath = \"healthz\"",
                "must start with '/'",
            ),
            ("[health]\npath = \"/\"", "no port is known"),
            (
                "port = 1\n[health]\ntimeout = \"soon\"",
                "write e.g. \"60s\"",
            ),
            (
                "port = 1\n[health]\ntimeout = \"2h\"",
                "between 100ms and 1h",
            ),
            ("port = 0", "is not a port"),
            ("port = 70000", "launch.toml"),
            ("[env]\n\"1X\" = \"a\"", "env.1X"),
            ("[health]\nsettle = \"2h\"", "health.settle"),
            ("[http]\nport = 70000", "http.port = 70000 is out of range"),
            ("[http]\nport = 0", "http.port = 0 is out of range"),
            (
                "[http]\nhosts = [\"https://hello.test\"]",
                "http.hosts: \"https://hello.test\" is not a valid host name",
            ),
            ("[http]\nservice = \"\"", "http.service"),
            ("[http]\nsevrice = \"web\"", "unknown field `sevrice`"),
            ("[health]\npath = \"/\"\n[http]\nport = 0", "http.port = 0"),
            (
                "[tags]\nteam = \"plat form\"",
                "tags.team: invalid tag \"team=plat form\": ' ' is not allowed in a value",
            ),
            ("[tags]\n\"a b\" = \"x\"", "tags.a b: invalid tag \"a b\""),
            ("[tags]\nteam = 1", "launch.toml"),
        ];
        for (input, expected) in cases {
            let message = parse(input).unwrap_err();
            assert!(message.contains(expected), "{input:?}: {message}");
        }
    }
}
