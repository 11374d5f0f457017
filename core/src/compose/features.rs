//! Which compose a host runs, and which keys of a compose file it lacks. The
//! agent reports its compose (`docker compose` v2 or `docker-compose` v1 and
//! the version) when it connects; a file using a key that compose does not
//! know is refused before it reaches the host, with what to do (install the
//! compose v2 plugin, or drop the key), instead of failing there.

use std::fmt;

use super::{Problem, Project};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// The `docker compose` v2 plugin.
    Plugin,
    /// The standalone `docker-compose` v1.
    Standalone,
}

/// A host's compose: flavor and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCompose {
    pub flavor: Flavor,
    pub version: (u32, u32, u32),
}

impl fmt::Display for HostCompose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor, patch) = self.version;
        let program = match self.flavor {
            Flavor::Plugin => "docker compose",
            Flavor::Standalone => "docker-compose",
        };
        write!(f, "{program} {major}.{minor}.{patch}")
    }
}

impl HostCompose {
    /// Reads what [`HostCompose`]'s `Display` writes (the wire form).
    pub fn parse(text: &str) -> Option<HostCompose> {
        let (flavor, version) = if let Some(v) = text.strip_prefix("docker compose ") {
            (Flavor::Plugin, v)
        } else {
            (Flavor::Standalone, text.strip_prefix("docker-compose ")?)
        };
        Some(HostCompose {
            flavor,
            version: parse_version(version)?,
        })
    }
}

/// `1.29.2`, `v2.24.0`, `2.24.0-desktop.1`, `1.29.2, build unknown`: the first three numbers.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let text = text.trim().trim_start_matches('v');
    let mut numbers = text
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|n| n.parse::<u32>().ok());
    Some((
        numbers.next()??,
        numbers.next()?.unwrap_or(0),
        numbers.next()?.unwrap_or(0),
    ))
}

/// A key and the first compose v2 version that knows it (v1 knows none of them).
struct Feature {
    key: &'static str,
    top_level: bool,
    since_v2: (u32, u32, u32),
}

const FEATURES: &[Feature] = &[
    Feature {
        key: "name",
        top_level: true,
        since_v2: (2, 3, 3),
    },
    Feature {
        key: "include",
        top_level: true,
        since_v2: (2, 20, 0),
    },
    Feature {
        key: "configs",
        top_level: true,
        since_v2: (2, 0, 0),
    },
    Feature {
        key: "develop",
        top_level: false,
        since_v2: (2, 22, 0),
    },
    Feature {
        key: "post_start",
        top_level: false,
        since_v2: (2, 30, 0),
    },
    Feature {
        key: "pre_stop",
        top_level: false,
        since_v2: (2, 30, 0),
    },
    Feature {
        key: "models",
        top_level: false,
        since_v2: (2, 38, 0),
    },
    Feature {
        key: "provider",
        top_level: false,
        since_v2: (2, 36, 0),
    },
    Feature {
        key: "use_api_socket",
        top_level: false,
        since_v2: (2, 35, 0),
    },
    Feature {
        key: "label_file",
        top_level: false,
        since_v2: (2, 32, 0),
    },
    Feature {
        key: "attach",
        top_level: false,
        since_v2: (2, 20, 0),
    },
];

/// The keys of `project` that `host` does not understand, each with what to do.
pub fn unsupported(project: &Project, host: HostCompose) -> Vec<Problem> {
    let lacks = |feature: &Feature| match host.flavor {
        Flavor::Standalone => true,
        Flavor::Plugin => host.version < feature.since_v2,
    };
    let advice = |feature: &Feature| {
        let (a, b, c) = feature.since_v2;
        format!(
            "the host runs {host}, which does not know `{}`: install the compose v2 plugin ({a}.{b}.{c} or newer, apt-get install docker-compose-plugin) on the host, or drop the key",
            feature.key
        )
    };
    let mut problems = Vec::new();
    for feature in FEATURES.iter().filter(|f| lacks(f)) {
        if feature.top_level {
            if project.top_level_keys.contains(feature.key) {
                problems.push(Problem {
                    at: feature.key.to_owned(),
                    message: advice(feature),
                });
            }
        } else {
            for (name, service) in &project.services {
                if service.keys.contains(feature.key) {
                    problems.push(Problem {
                        at: format!("services.{name}.{}", feature.key),
                        message: advice(feature),
                    });
                }
            }
        }
    }
    problems
}
