//! The host policy: what a deploy may ask of the host it runs on. By
//! default a compose file may not mount host paths outside its release
//! directory, reach the Docker socket, run privileged, share the host's
//! network/pid/ipc/uts/user namespaces, add capabilities, map devices,
//! weaken `security_opt`, set sysctls, or build/read env files from outside
//! its release directory. An admin may allow a key for one service and
//! environment ([`Allowance`]); a refusal names the key and the allowance
//! that would permit it. The rules judge the parsed, interpolated
//! [`Project`](crate::compose::Project), never the text, so quoting, anchors
//! or variables cannot hide a key.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::compose::{MountKind, Project};

const DOCKER_SOCKETS: [&str; 2] = ["/var/run/docker.sock", "/run/docker.sock"];

/// One permission an admin can grant a service in an environment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Allowance {
    Privileged,
    HostNetwork,
    HostPid,
    HostIpc,
    HostUts,
    HostUserns,
    /// `cap-add` (any capability) or `cap-add:NET_ADMIN`.
    CapAdd(Option<String>),
    Devices,
    SecurityOpt,
    Sysctls,
    DockerSocket,
    /// `bind:/srv/data`: that host path and everything below it.
    Bind(PathBuf),
}

/// Every allowance spelling, for help texts.
pub const ALLOWANCE_KINDS: &str = "privileged, host-network, host-pid, host-ipc, host-uts, host-userns, cap-add[:CAP], devices, security-opt, sysctls, docker-socket, bind:/ABSOLUTE/PATH";

impl FromStr for Allowance {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "privileged" => Allowance::Privileged,
            "host-network" => Allowance::HostNetwork,
            "host-pid" => Allowance::HostPid,
            "host-ipc" => Allowance::HostIpc,
            "host-uts" => Allowance::HostUts,
            "host-userns" => Allowance::HostUserns,
            "cap-add" => Allowance::CapAdd(None),
            "devices" => Allowance::Devices,
            "security-opt" => Allowance::SecurityOpt,
            "sysctls" => Allowance::Sysctls,
            "docker-socket" => Allowance::DockerSocket,
            _ => {
                if let Some(cap) = text.strip_prefix("cap-add:")
                    && !cap.is_empty()
                    && cap.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    Allowance::CapAdd(Some(cap.to_ascii_uppercase()))
                } else if let Some(path) = text.strip_prefix("bind:")
                    && path.starts_with('/')
                {
                    Allowance::Bind(normalize(Path::new(path)))
                } else {
                    return Err(format!(
                        "{text:?} is not an allowance: use one of {ALLOWANCE_KINDS}"
                    ));
                }
            }
        })
    }
}

impl fmt::Display for Allowance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allowance::Privileged => f.write_str("privileged"),
            Allowance::HostNetwork => f.write_str("host-network"),
            Allowance::HostPid => f.write_str("host-pid"),
            Allowance::HostIpc => f.write_str("host-ipc"),
            Allowance::HostUts => f.write_str("host-uts"),
            Allowance::HostUserns => f.write_str("host-userns"),
            Allowance::CapAdd(None) => f.write_str("cap-add"),
            Allowance::CapAdd(Some(cap)) => write!(f, "cap-add:{cap}"),
            Allowance::Devices => f.write_str("devices"),
            Allowance::SecurityOpt => f.write_str("security-opt"),
            Allowance::Sysctls => f.write_str("sysctls"),
            Allowance::DockerSocket => f.write_str("docker-socket"),
            Allowance::Bind(path) => write!(f, "bind:{}", path.display()),
        }
    }
}

impl Allowance {
    /// True when this granted allowance covers the `needed` one.
    fn covers(&self, needed: &Allowance) -> bool {
        match (self, needed) {
            (Allowance::CapAdd(None), Allowance::CapAdd(_)) => true,
            (Allowance::Bind(granted), Allowance::Bind(path)) => path.starts_with(granted),
            _ => self == needed,
        }
    }
}

/// A key of the compose file the policy refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The key path, e.g. `services.web.network_mode`.
    pub at: String,
    pub what: String,
    /// The allowance that would permit it; `None` when nothing can (files
    /// from outside the release directory must be copied in).
    pub allowance: Option<Allowance>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} is not allowed on this host", self.at, self.what)?;
        match &self.allowance {
            Some(allowance) => write!(
                f,
                "; an admin can allow it with `launch services allow SERVICE --env ENV {allowance}`"
            ),
            None => f.write_str("; copy what it needs into the service directory"),
        }
    }
}

/// Judges `project`, unpacked in `release_dir`, against the `granted` allowances.
pub fn check(project: &Project, release_dir: &Path, granted: &[Allowance]) -> Vec<Refusal> {
    let root = normalize(release_dir);
    let host_path = |source: &str| -> PathBuf {
        let path = match source.strip_prefix('~') {
            Some(rest) => Path::new("/root").join(rest.trim_start_matches('/')),
            None => root.join(source),
        };
        normalize(&path)
    };
    let bind =
        |at: String, what: &str, source: &str| -> Option<(String, String, Option<Allowance>)> {
            let path = host_path(source);
            if path.starts_with(&root) {
                return None;
            }
            let socket = DOCKER_SOCKETS.iter().any(|s| path == Path::new(s));
            let allowance = if socket {
                Allowance::DockerSocket
            } else {
                Allowance::Bind(path.clone())
            };
            Some((
                at,
                format!(
                    "{what} of {} (outside the release directory)",
                    path.display()
                ),
                Some(allowance),
            ))
        };
    let outside =
        |at: String, what: &str, path: PathBuf| -> Option<(String, String, Option<Allowance>)> {
            (!path.starts_with(&root)).then(|| {
                (
                    at,
                    format!(
                        "{what} at {} (outside the release directory)",
                        path.display()
                    ),
                    None,
                )
            })
        };
    // Every key that needs more than the default: (key path, what, allowance).
    let mut found = Vec::new();
    for (name, volume) in &project.volumes {
        if let Some(device) = &volume.bind_device {
            found.extend(bind(
                format!("volumes.{name}.driver_opts.device"),
                "a volume binding the host path",
                device,
            ));
        }
    }
    for (kind, files) in [("secrets", &project.secrets), ("configs", &project.configs)] {
        for (name, file) in files {
            if let Some(file) = file {
                found.extend(bind(format!("{kind}.{name}.file"), "a file", file));
            }
        }
    }
    for (name, service) in &project.services {
        let at = |key: &str| format!("services.{name}.{key}");
        for (i, mount) in service.mounts.iter().enumerate() {
            if let (MountKind::Bind, Some(source)) = (mount.kind, &mount.source) {
                found.extend(bind(at(&format!("volumes[{i}]")), "a bind mount", source));
            }
        }
        if service.use_api_socket {
            found.push((
                at("use_api_socket"),
                "the Docker socket".into(),
                Some(Allowance::DockerSocket),
            ));
        }
        if service.privileged {
            found.push((
                at("privileged"),
                "privileged: true".into(),
                Some(Allowance::Privileged),
            ));
        }
        let namespaces = [
            (
                "network_mode",
                &service.network_mode,
                Allowance::HostNetwork,
            ),
            ("pid", &service.pid, Allowance::HostPid),
            ("ipc", &service.ipc, Allowance::HostIpc),
            ("uts", &service.uts, Allowance::HostUts),
            ("userns_mode", &service.userns_mode, Allowance::HostUserns),
        ];
        for (key, value, allowance) in namespaces {
            if value.as_deref() == Some("host") {
                found.push((at(key), format!("{key}: host"), Some(allowance)));
            }
        }
        for cap in &service.cap_add {
            let cap = cap.trim_start_matches("CAP_").to_ascii_uppercase();
            found.push((
                at("cap_add"),
                format!("cap_add {cap}"),
                Some(Allowance::CapAdd(Some(cap))),
            ));
        }
        if !service.devices.is_empty() {
            found.push((
                at("devices"),
                format!("devices {}", service.devices.join(", ")),
                Some(Allowance::Devices),
            ));
        }
        for option in &service.security_opt {
            if weakens(option) {
                found.push((
                    at("security_opt"),
                    format!("security_opt {option}"),
                    Some(Allowance::SecurityOpt),
                ));
            }
        }
        if !service.sysctls.is_empty() {
            found.push((
                at("sysctls"),
                format!("sysctls {}", service.sysctls.join(", ")),
                Some(Allowance::Sysctls),
            ));
        }
        if let Some(build) = &service.build
            && !remote(&build.context)
        {
            let context = host_path(&build.context);
            found.extend(outside(
                at("build.context"),
                "a build context",
                context.clone(),
            ));
            if let Some(dockerfile) = &build.dockerfile {
                found.extend(outside(
                    at("build.dockerfile"),
                    "a Dockerfile",
                    normalize(&context.join(dockerfile)),
                ));
            }
            for extra in build
                .additional_contexts
                .iter()
                .filter(|c| !remote(c) && !c.starts_with("service:"))
            {
                found.extend(outside(
                    at("build.additional_contexts"),
                    "a build context",
                    host_path(extra),
                ));
            }
        }
        for file in &service.env_files {
            found.extend(outside(at("env_file"), "an env_file", host_path(file)));
        }
    }
    found
        .into_iter()
        .filter(|(_, _, allowance)| {
            !allowance
                .as_ref()
                .is_some_and(|needed| granted.iter().any(|g| g.covers(needed)))
        })
        .map(|(at, what, allowance)| Refusal {
            at,
            what,
            allowance,
        })
        .collect()
}

/// Security options that turn a protection off.
fn weakens(option: &str) -> bool {
    let option = option.replace('=', ":");
    let option = option.trim();
    option.ends_with(":unconfined")
        || option == "label:disable"
        || option == "no-new-privileges:false"
        || option.starts_with("systempaths")
}

/// A build context compose fetches instead of reading from the host.
fn remote(context: &str) -> bool {
    [
        "http://",
        "https://",
        "git://",
        "git@",
        "github.com/",
        "docker-image://",
        "oci-layout://",
    ]
    .iter()
    .any(|p| context.starts_with(p))
}

/// `a/./b/../c` → `a/c`, lexically (a release directory holds no links).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
