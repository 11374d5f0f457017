//! One compose model for every process that must understand a compose file:
//! `launch deploy` checks it before uploading, the control plane checks an
//! uploaded bundle again (a hand-made bundle skips the CLI), and the agent
//! holds a deploy to its host policy on it. The file is parsed as YAML,
//! merge keys are applied, every string value is interpolated the way
//! compose will ([`interpolate`]), and the result is read into a typed
//! [`Project`] holding what Launch needs to judge: services, their mounts,
//! ports, build contexts, host namespaces, privileges, dependencies and
//! restart policies. Problems are collected, not stopped at, and each names
//! its place: the file's line for a YAML error, the key path
//! (`services.web.ports[0]`) for everything else.

pub mod features;
pub mod interpolate;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_yaml_ng::{Mapping, Value};

pub use interpolate::{OPAQUE, Variables};
pub use service::{Build, Mount, MountKind, Service};

use crate::Error;

/// Top-level keys of the compose specification.
const TOP_LEVEL_KEYS: [&str; 8] = [
    "version", "name", "services", "networks", "volumes", "secrets", "configs", "include",
];

/// A compose file as Launch understands it, after interpolation.
#[derive(Clone, Debug, Default)]
pub struct Project {
    /// Top-level `name:`, if set.
    pub name: Option<String>,
    /// Top-level keys present (extension `x-` keys left out).
    pub top_level_keys: BTreeSet<String>,
    pub services: BTreeMap<String, Service>,
    /// Named volumes declared at the top level.
    pub volumes: BTreeMap<String, Volume>,
    pub networks: BTreeSet<String>,
    /// Top-level secrets and configs: name → the file they read, if any.
    pub secrets: BTreeMap<String, Option<String>>,
    pub configs: BTreeMap<String, Option<String>>,
    /// Variables the file uses that nothing sets (compose substitutes "").
    pub unset_variables: BTreeSet<String>,
}

/// A top-level named volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Volume {
    /// `driver_opts.device` of a local volume with `o: bind`: a host path in disguise.
    pub bind_device: Option<String>,
}

/// One problem in a compose file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `line 3 column 5` for YAML errors, else the key path.
    pub at: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

/// Collects problems while walking the file; `at` builds key paths.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            at: at.into(),
            message: message.into(),
        });
    }
}

/// Parses, interpolates and checks the compose file `text` (named `file` in
/// messages). Every problem found is in the error, not just the first.
pub fn load(file: &str, text: &str, vars: &Variables) -> Result<Project, Error> {
    let fail = |problems: Vec<Problem>| Error::Compose {
        file: file.to_owned(),
        problems,
    };
    let mut value: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{file}:{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        fail(vec![Problem {
            at,
            message: format!("not valid YAML: {e}"),
        }])
    })?;
    value.apply_merge().map_err(|e| {
        fail(vec![Problem {
            at: String::new(),
            message: format!("a YAML merge key (<<) is wrong: {e}"),
        }])
    })?;
    let mut problems = Problems::default();
    let mut unset = BTreeSet::new();
    interpolate_all(&mut value, "", vars, &mut unset, &mut problems);
    if !problems.0.is_empty() {
        return Err(fail(problems.0));
    }
    let project = read_project(&value, &mut problems);
    if problems.0.is_empty() {
        Ok(Project {
            unset_variables: unset,
            ..project
        })
    } else {
        Err(fail(problems.0))
    }
}

/// The variables compose will see on the host, as far as they are known
/// before the release is there: the bundle's `.env` (uploaded only with
/// `--include-env`), then `launch.toml [env]`, then the secrets and the
/// `LAUNCH_*` variables the agent adds (their values are not known here).
/// Later sources win, as they do in the `.env` the agent writes.
pub fn host_variables<'a>(
    dotenv: Option<&str>,
    config_env: &BTreeMap<String, String>,
    secret_names: impl IntoIterator<Item = &'a str>,
) -> Variables {
    let mut vars = Variables::new();
    if let Some(text) = dotenv {
        vars.set_dotenv(text);
    }
    for (name, value) in config_env {
        vars.set(name.clone(), value.clone());
    }
    for name in secret_names {
        vars.set_opaque(name);
    }
    for name in ["LAUNCH_SERVICE", "LAUNCH_ENVIRONMENT", "LAUNCH_RELEASE"] {
        vars.set_opaque(name);
    }
    vars
}

/// Everything checked before a release reaches a host: [`load`], and when
/// the host's compose is known, the keys it lacks ([`features::unsupported`]).
pub fn check(
    file: &str,
    text: &str,
    vars: &Variables,
    host: Option<features::HostCompose>,
) -> Result<Project, Error> {
    let project = load(file, text, vars)?;
    let lacking = host
        .map(|host| features::unsupported(&project, host))
        .unwrap_or_default();
    if lacking.is_empty() {
        Ok(project)
    } else {
        Err(Error::Compose {
            file: file.to_owned(),
            problems: lacking,
        })
    }
}

fn interpolate_all(
    value: &mut Value,
    at: &str,
    vars: &Variables,
    unset: &mut BTreeSet<String>,
    problems: &mut Problems,
) {
    match value {
        Value::String(text) => match interpolate::interpolate(text, vars, unset) {
            Ok(done) => *text = done,
            Err(interpolate::InterpolationError::Required { name, message }) => problems.push(
                at,
                format!(
                    "required variable {name} is not set ({message}): set it in launch.toml [env], the service's .env (with --include-env) or as a secret"
                ),
            ),
            Err(interpolate::InterpolationError::Syntax(message)) => problems.push(at, message),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_all(item, &format!("{at}[{i}]"), vars, unset, problems);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let path = join(at, &key_text(key));
                interpolate_all(item, &path, vars, unset, problems);
            }
        }
        Value::Tagged(tagged) => interpolate_all(&mut tagged.value, at, vars, unset, problems),
        _ => {}
    }
}

pub(crate) fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

pub(crate) fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// A scalar as compose reads it: strings, numbers and booleans as text.
pub(crate) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn mapping<'a>(
    value: &'a Value,
    at: &str,
    what: &str,
    problems: &mut Problems,
) -> Option<&'a Mapping> {
    match value {
        Value::Mapping(map) => Some(map),
        Value::Null => None,
        _ => {
            problems.push(at, format!("must be a mapping of {what}"));
            None
        }
    }
}

fn read_project(root: &Value, problems: &mut Problems) -> Project {
    let mut project = Project::default();
    let Value::Mapping(root) = root else {
        problems.push(
            "",
            "the file is not a mapping: a compose file starts with `services:`",
        );
        return project;
    };
    for (key, value) in root {
        let key = key_text(key);
        if key.starts_with("x-") {
            continue;
        }
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            problems.push(
                key.clone(),
                format!(
                    "unknown top-level key `{key}`: compose knows {} (and x-* extensions)",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            );
            continue;
        }
        project.top_level_keys.insert(key.clone());
        match key.as_str() {
            "name" => project.name = scalar(value),
            "volumes" => {
                for (name, spec) in mapping(value, "volumes", "volume names", problems)
                    .into_iter()
                    .flatten()
                {
                    let name = key_text(name);
                    let volume = read_volume(spec, &join("volumes", &name), problems);
                    project.volumes.insert(name, volume);
                }
            }
            "networks" => {
                for (name, _) in mapping(value, "networks", "network names", problems)
                    .into_iter()
                    .flatten()
                {
                    project.networks.insert(key_text(name));
                }
            }
            "secrets" | "configs" => {
                let mut files = BTreeMap::new();
                for (name, spec) in mapping(value, &key, "names", problems)
                    .into_iter()
                    .flatten()
                {
                    let file = spec.get("file").and_then(scalar);
                    files.insert(key_text(name), file);
                }
                if key == "secrets" {
                    project.secrets = files;
                } else {
                    project.configs = files;
                }
            }
            _ => {}
        }
    }
    match root.get("services") {
        None => problems.push(
            "services",
            "the file has no `services:`: declare at least one service",
        ),
        Some(services) => {
            for (name, spec) in mapping(services, "services", "service names", problems)
                .into_iter()
                .flatten()
            {
                let name = key_text(name);
                let at = join("services", &name);
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                {
                    problems.push(
                        at.clone(),
                        "a service name uses only letters, digits, '.', '_' and '-'",
                    );
                }
                if let Some(service) = service::read(spec, &at, problems) {
                    project.services.insert(name, service);
                }
            }
        }
    }
    cross_check(&project, problems);
    project
}

fn read_volume(spec: &Value, at: &str, problems: &mut Problems) -> Volume {
    let Some(map) = mapping(spec, at, "volume settings", problems) else {
        return Volume::default();
    };
    let opts = map.get("driver_opts");
    let option = |name: &str| opts.and_then(|o| o.get(name)).and_then(scalar);
    let binds = option("o").is_some_and(|o| o.split(',').any(|part| part.trim() == "bind"));
    Volume {
        bind_device: option("device")
            .filter(|_| binds || option("type").as_deref() == Some("none")),
    }
}

/// References between services and top-level declarations.
fn cross_check(project: &Project, problems: &mut Problems) {
    for (name, service) in &project.services {
        let at = join("services", name);
        for dependency in service.depends_on.keys() {
            if !project.services.contains_key(dependency) {
                problems.push(
                    format!("{at}.depends_on"),
                    format!("depends on `{dependency}`, which is not a service in this file"),
                );
            }
        }
        for mount in &service.mounts {
            if let (MountKind::Volume, Some(source)) = (mount.kind, &mount.source)
                && !project.volumes.contains_key(source)
                && !source.contains(OPAQUE)
            {
                problems.push(
                    format!("{at}.volumes"),
                    format!(
                        "uses the named volume `{source}`, which is not declared: add it under the top-level `volumes:`"
                    ),
                );
            }
        }
        for network in &service.networks {
            if network != "default" && !project.networks.contains(network) {
                problems.push(
                    format!("{at}.networks"),
                    format!(
                        "uses the network `{network}`, which is not declared: add it under the top-level `networks:`"
                    ),
                );
            }
        }
        for secret in &service.secrets {
            if !project.secrets.contains_key(secret) {
                problems.push(
                    format!("{at}.secrets"),
                    format!(
                        "uses the secret `{secret}`, which is not declared: add it under the top-level `secrets:`"
                    ),
                );
            }
        }
    }
}

impl Project {
    /// Services that are done when they exit 0: an explicit `restart: "no"`,
    /// or the target of a `service_completed_successfully` dependency.
    pub fn one_shot_services(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.restart.as_deref() == Some("no"))
            .map(|(name, _)| name.clone())
            .collect();
        for service in self.services.values() {
            for (dependency, condition) in &service.depends_on {
                if condition == "service_completed_successfully" {
                    names.insert(dependency.clone());
                }
            }
        }
        names
    }
}

#[cfg(test)]
mod tests;
