//! One service of a compose file, read into the fields Launch judges: what
//! it runs (image or build), what it mounts, which ports it publishes, which
//! host namespaces and privileges it asks for, what it depends on and how it
//! restarts. Both the short and the long syntax of every such key are read,
//! since a policy that understood only one could be walked around.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

use super::{OPAQUE, Problems, join, key_text, mapping, scalar};

/// Keys of a service in the compose specification.
const SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];

const CONDITIONS: [&str; 3] = [
    "service_started",
    "service_healthy",
    "service_completed_successfully",
];

#[derive(Clone, Debug, Default)]
pub struct Service {
    /// Keys present (extensions left out), for features a compose lacks.
    pub keys: BTreeSet<String>,
    pub image: Option<String>,
    pub build: Option<Build>,
    /// `no`, `always`, `on-failure[:N]`, `unless-stopped`; `None` when unset.
    pub restart: Option<String>,
    /// Dependency → condition (`service_started` for the list form).
    pub depends_on: BTreeMap<String, String>,
    pub mounts: Vec<Mount>,
    pub networks: Vec<String>,
    pub secrets: Vec<String>,
    pub env_files: Vec<String>,
    pub profiles: Vec<String>,
    pub has_healthcheck: bool,
    pub privileged: bool,
    pub network_mode: Option<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub uts: Option<String>,
    pub userns_mode: Option<String>,
    pub cap_add: Vec<String>,
    pub devices: Vec<String>,
    pub security_opt: Vec<String>,
    pub sysctls: Vec<String>,
    pub use_api_socket: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Build {
    pub context: String,
    pub dockerfile: Option<String>,
    pub additional_contexts: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A named volume (`source` set) or an anonymous one.
    Volume,
    Tmpfs,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    pub source: Option<String>,
    pub target: String,
}

pub(super) fn read(spec: &Value, at: &str, problems: &mut Problems) -> Option<Service> {
    let map = match spec {
        Value::Mapping(map) => map,
        _ => {
            problems.push(
                at,
                "must be a mapping of service settings (image:, build:, …)",
            );
            return None;
        }
    };
    let mut service = Service::default();
    for (key, value) in map {
        let key = key_text(key);
        if key.starts_with("x-") {
            continue;
        }
        let here = join(at, &key);
        if !SERVICE_KEYS.contains(&key.as_str()) {
            problems.push(
                here,
                format!("unknown service key `{key}`: check its spelling against the compose specification"),
            );
            continue;
        }
        service.keys.insert(key.clone());
        let text = || scalar(value);
        match key.as_str() {
            "image" => service.image = text(),
            "build" => service.build = read_build(value, &here, problems),
            "restart" => {
                let restart = text().unwrap_or_default();
                let known = ["no", "always", "unless-stopped", "on-failure"]
                    .contains(&restart.as_str())
                    || restart
                        .strip_prefix("on-failure:")
                        .is_some_and(|n| n.parse::<u32>().is_ok());
                if !known && !restart.contains(OPAQUE) {
                    problems.push(
                        here,
                        format!("restart {restart:?} is not a policy: use \"no\", always, on-failure[:N] or unless-stopped"),
                    );
                }
                service.restart = Some(restart);
            }
            "depends_on" => service.depends_on = read_depends_on(value, &here, problems),
            "ports" => {
                for (i, port) in list(value, &here, problems).iter().enumerate() {
                    check_port(port, &format!("{here}[{i}]"), problems);
                }
            }
            "volumes" => {
                for (i, item) in list(value, &here, problems).iter().enumerate() {
                    if let Some(mount) = read_mount(item, &format!("{here}[{i}]"), problems) {
                        service.mounts.push(mount);
                    }
                }
            }
            "tmpfs" => {}
            "networks" => service.networks = names(value, &here, problems),
            "secrets" => {
                service.secrets = list(value, &here, problems)
                    .iter()
                    .filter_map(|item| scalar(item).or_else(|| item.get("source").and_then(scalar)))
                    .collect()
            }
            "env_file" => {
                service.env_files = match value {
                    Value::Sequence(_) => list(value, &here, problems)
                        .iter()
                        .filter_map(|item| {
                            scalar(item).or_else(|| item.get("path").and_then(scalar))
                        })
                        .collect(),
                    _ => text().into_iter().collect(),
                }
            }
            "profiles" => service.profiles = strings(value, &here, problems),
            "healthcheck" => {
                service.has_healthcheck = value.get("disable").and_then(Value::as_bool)
                    != Some(true)
                    && value.get("test").is_some()
            }
            "privileged" => service.privileged = truthy(value),
            "use_api_socket" => service.use_api_socket = truthy(value),
            "network_mode" => service.network_mode = text(),
            "pid" => service.pid = text(),
            "ipc" => service.ipc = text(),
            "uts" => service.uts = text(),
            "userns_mode" => service.userns_mode = text(),
            "cap_add" => service.cap_add = strings(value, &here, problems),
            "devices" => {
                service.devices = list(value, &here, problems)
                    .iter()
                    .map(|d| {
                        scalar(d)
                            .unwrap_or_else(|| d.get("source").and_then(scalar).unwrap_or_default())
                    })
                    .collect()
            }
            "security_opt" => service.security_opt = strings(value, &here, problems),
            "sysctls" => service.sysctls = names(value, &here, problems),
            _ => {}
        }
    }
    if service.image.is_none() && service.build.is_none() {
        problems.push(
            at,
            "has neither `image` nor `build`: add `build: .` (with a Dockerfile) or an image",
        );
    }
    Some(service)
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => false,
    }
}

fn list<'a>(value: &'a Value, at: &str, problems: &mut Problems) -> &'a [Value] {
    match value {
        Value::Sequence(items) => items,
        Value::Null => &[],
        _ => {
            problems.push(at, "must be a list");
            &[]
        }
    }
}

fn strings(value: &Value, at: &str, problems: &mut Problems) -> Vec<String> {
    list(value, at, problems)
        .iter()
        .filter_map(scalar)
        .collect()
}

/// A list of names, or a mapping whose keys are the names.
fn names(value: &Value, at: &str, problems: &mut Problems) -> Vec<String> {
    match value {
        Value::Mapping(map) => map.keys().map(key_text).collect(),
        _ => strings(value, at, problems)
            .into_iter()
            .map(|s| s.split('=').next().unwrap_or_default().to_owned())
            .collect(),
    }
}

fn read_build(value: &Value, at: &str, problems: &mut Problems) -> Option<Build> {
    if let Some(context) = scalar(value) {
        return Some(Build {
            context,
            ..Build::default()
        });
    }
    let map = mapping(value, at, "build settings", problems)?;
    let field = |name: &str| map.get(name).and_then(scalar);
    let additional_contexts = match map.get("additional_contexts") {
        Some(Value::Mapping(m)) => m.values().filter_map(scalar).collect(),
        Some(other) => strings(other, &join(at, "additional_contexts"), problems)
            .into_iter()
            .map(|s| s.split_once('=').map(|(_, v)| v.to_owned()).unwrap_or(s))
            .collect(),
        None => Vec::new(),
    };
    Some(Build {
        context: field("context").unwrap_or_else(|| ".".to_owned()),
        dockerfile: field("dockerfile"),
        additional_contexts,
    })
}

fn read_depends_on(value: &Value, at: &str, problems: &mut Problems) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Value::Mapping(map) = value {
        for (name, spec) in map {
            let name = key_text(name);
            let condition = spec
                .get("condition")
                .and_then(scalar)
                .unwrap_or_else(|| "service_started".to_owned());
            if !CONDITIONS.contains(&condition.as_str()) {
                problems.push(
                    format!("{at}.{name}.condition"),
                    format!(
                        "{condition:?} is not a condition: use one of {}",
                        CONDITIONS.join(", ")
                    ),
                );
            }
            out.insert(name, condition);
        }
    } else {
        for name in strings(value, at, problems) {
            out.insert(name, "service_started".to_owned());
        }
    }
    out
}

/// `[IP:][HOST[-HOST]:]CONTAINER[-CONTAINER][/PROTO]`, or the long form.
fn check_port(value: &Value, at: &str, problems: &mut Problems) {
    let mut numbers: Vec<(String, bool)> = Vec::new();
    if let Value::Mapping(map) = value {
        match map.get("target").and_then(scalar) {
            Some(target) => numbers.push((target, false)),
            None => problems.push(at, "a port in long syntax needs `target`"),
        }
        if let Some(published) = map.get("published").and_then(scalar) {
            numbers.push((published, true));
        }
    } else if let Some(text) = scalar(value) {
        if text.contains(OPAQUE) {
            return;
        }
        let spec = text.split('/').next().unwrap_or_default();
        // An IPv6 host address is in brackets; drop the address part.
        let spec = match spec.rfind(']') {
            Some(end) => spec[end + 1..].trim_start_matches(':'),
            None => spec,
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, container) = match parts.as_slice() {
            [container] => (None, *container),
            [host, container] => (Some(*host), *container),
            [_, host, container] => (Some(*host), *container),
            _ => {
                problems.push(
                    at,
                    format!(
                        "{text:?} is not a port mapping: write HOST:CONTAINER, e.g. \"8080:80\""
                    ),
                );
                return;
            }
        };
        numbers.push((container.to_owned(), false));
        if let Some(host) = host.filter(|h| !h.is_empty()) {
            numbers.push((host.to_owned(), true));
        }
    } else {
        problems.push(at, "must be a port mapping such as \"8080:80\"");
        return;
    }
    for (range, published) in numbers {
        for number in range.split('-') {
            match number.trim().parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => {}
                Ok(0) if published => {}
                _ => problems.push(
                    at,
                    format!("{number:?} is not a port: use a number from 1 to 65535"),
                ),
            }
        }
    }
}

fn read_mount(value: &Value, at: &str, problems: &mut Problems) -> Option<Mount> {
    if let Value::Mapping(map) = value {
        let kind = match map.get("type").and_then(scalar).as_deref() {
            Some("bind") => MountKind::Bind,
            Some("volume") | None => MountKind::Volume,
            Some("tmpfs") => MountKind::Tmpfs,
            _ => MountKind::Other,
        };
        let Some(target) = map.get("target").and_then(scalar) else {
            problems.push(at, "a volume in long syntax needs `target`");
            return None;
        };
        let source = map.get("source").and_then(scalar).filter(|s| !s.is_empty());
        let kind = match (kind, &source) {
            (MountKind::Volume, Some(s)) if path_like(s) => MountKind::Bind,
            _ => kind,
        };
        return Some(Mount {
            kind,
            source,
            target,
        });
    }
    let Some(text) = scalar(value) else {
        problems.push(at, "must be SOURCE:TARGET[:MODE] or a mapping");
        return None;
    };
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target) = match parts.as_slice() {
        [target] => (None, *target),
        [source, target] | [source, target, _] => (Some(*source), *target),
        _ => {
            problems.push(at, format!("{text:?} is not SOURCE:TARGET[:MODE]"));
            return None;
        }
    };
    let kind = match source {
        Some(s) if path_like(s) => MountKind::Bind,
        _ => MountKind::Volume,
    };
    Some(Mount {
        kind,
        source: source.map(str::to_owned),
        target: target.to_owned(),
    })
}

/// Compose treats a volume source as a host path when it looks like one.
pub(crate) fn path_like(source: &str) -> bool {
    source.starts_with('/')
        || source.starts_with('.')
        || source.starts_with('~')
        || source.starts_with(OPAQUE)
}
