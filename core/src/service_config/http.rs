//! The `[http]` table of `launch.toml`: which compose service the front door
//! sends traffic to, on which container port, and under which extra host
//! names. Checked here, once, for every reader (the CLI before it uploads,
//! the agent before it routes): a port in 1–65535 and host names that are
//! DNS names. Whether `service` exists is a question for the compose file
//! (`compose_services`).
//!
//! ```toml
//! [http]
//! service = "web"              # default: the only service with a port
//! port = 8080                  # the container port (default: the one it exposes)
//! hosts = ["hello.example.com"]
//! ```

use serde::Deserialize;

/// What the front door routes, as `launch.toml` says it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Http {
    pub service: Option<String>,
    pub port: Option<u16>,
    /// Lower-case DNS names.
    pub hosts: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    service: Option<String>,
    port: Option<i64>,
    #[serde(default)]
    hosts: Vec<String>,
}

impl RawHttp {
    /// The typed table, or a message naming the key that is wrong.
    pub(super) fn check(self) -> Result<Http, String> {
        let port = match self.port {
            None => None,
            Some(port @ 1..=65535) => Some(port as u16),
            Some(port) => {
                return Err(format!(
                    "http.port = {port} is out of range: give the container port the service listens on (1-65535)"
                ));
            }
        };
        if let Some(service) = &self.service
            && (service.is_empty()
                || !service
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "http.service = {service:?} is not a compose service name: give the name under `services:` in the compose file"
            ));
        }
        let mut hosts = Vec::new();
        for host in self.hosts {
            if !is_host_name(&host) {
                return Err(format!(
                    "http.hosts: {host:?} is not a valid host name: use a DNS name such as \"hello.example.com\" (letters, digits, '-', dots; no scheme, port or path)"
                ));
            }
            hosts.push(host.to_ascii_lowercase());
        }
        Ok(Http {
            service: self.service,
            port,
            hosts,
        })
    }
}

/// A DNS host name: dot-separated labels of letters, digits and inner
/// hyphens, 1–63 bytes each, 253 in all.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The service names a compose file declares under its top-level
/// `services:` mapping, read by indentation (block style, as compose files
/// are written). `None` when the file has no block-style `services:`, so a
/// caller cannot tell and must not refuse.
pub fn compose_services(text: &str) -> Option<Vec<String>> {
    let mut lines = text.lines();
    lines.find(|line| line.trim_end() == "services:")?;
    let mut indent = None;
    let mut services = Vec::new();
    for line in lines {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let depth = line.len() - content.len();
        if depth == 0 {
            break;
        }
        let indent = *indent.get_or_insert(depth);
        if depth != indent {
            continue;
        }
        let key = content.split(':').next()?.trim().trim_matches(['"', '\'']);
        services.push(key.to_owned());
    }
    Some(services)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_dns_names() {
        for good in ["hello.test", "a", "x-1.example.com", "Hello.Test"] {
            assert!(is_host_name(good), "{good}");
        }
        for bad in [
            "",
            "https://hello.test",
            "hello.test:80",
            "hello.test/x",
            "-a.test",
            "a..test",
            "a_b.test",
            "*.test",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_services_of_a_compose_file_are_its_top_level_keys() {
        let text = "version: '3'\nservices:\n  web:\n    build: .\n    ports:\n      - \"8080\"\n  # a comment\n  \"db\":\n    image: x\nvolumes:\n  data: {}\n";
        assert_eq!(compose_services(text).unwrap(), vec!["web", "db"]);
        assert_eq!(compose_services("services: {web: {}}\n"), None);
    }
}
