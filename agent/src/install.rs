//! `launch-agent install` and `uninstall`: what turns a fresh host into a
//! Launch host and back, with no manual step. Install writes the agent's
//! config (0600, holding the single-use join token) and a hardened systemd
//! unit, then enables and starts it; run again with the same settings it
//! changes nothing, and it refuses to re-point a registered host at another
//! control plane or other labels unless `--force`. Uninstall stops and removes
//! the unit and config; services keep running unless `--stop-services`.
//!
//! With `--ca-cert FILE` (an `https://` control plane signed by a private
//! CA) the certificate is copied to `/etc/launch/ca.pem` and named as
//! `ca_cert` in the config, so the agent never depends on where the file
//! was when it was installed.
//!
//! Every path is under `--root` (default `/`), so tests can install into a
//! temp dir without touching the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use launch_core::labels::Labels;
use launch_core::private_file::{create_private_dir, write_private};
use serde::{Deserialize, Serialize};

use crate::config::{DEFAULT_CONFIG_FILE, DEFAULT_DATA_DIR};
use crate::control_urls::Setting;
use crate::identity::{IDENTITY_FILE, TOKEN_FILE};

pub const UNIT_NAME: &str = "launch-agent.service";
pub const UNIT_DIR: &str = "etc/systemd/system";
/// Where install puts the `--ca-cert` it was given.
pub const CA_CERT_FILE: &str = "/etc/launch/ca.pem";

#[derive(Clone, Debug, clap::Args)]
pub struct InstallArgs {
    /// The control plane, e.g. http://10.0.0.5:7400; repeat it (or separate
    /// with commas) for replicas
    #[arg(
        long,
        env = "LAUNCH_AGENT_CONTROL_URL",
        value_delimiter = ',',
        required = true
    )]
    pub control_url: Vec<String>,
    /// Single-use join token from `launch token create` (or terraform)
    #[arg(long, env = "LAUNCH_AGENT_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: String,
    /// service-name=S,environment=E
    #[arg(long, env = "LAUNCH_AGENT_LABELS")]
    pub labels: String,
    /// Where releases and the agent token live
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Host name or address used in service URLs [default: the host name]
    #[arg(long)]
    pub advertise_host: Option<String>,
    /// PEM CA certificate of an https:// control plane (copied to /etc/launch/ca.pem)
    #[arg(long, env = "LAUNCH_AGENT_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Write the files but do not enable or start the unit
    #[arg(long)]
    pub no_start: bool,
    /// Re-register even if this host is registered with another control plane or labels
    #[arg(long)]
    pub force: bool,
    /// Prefix for every path written (for image builds and tests)
    #[arg(long, default_value = "/", hide = true)]
    pub root: PathBuf,
}

#[derive(Clone, Debug, clap::Args)]
pub struct UninstallArgs {
    /// Also stop the compose services this agent runs (`compose down`)
    #[arg(long)]
    pub stop_services: bool,
    /// Also delete the data dir (releases, agent token)
    #[arg(long)]
    pub purge: bool,
    #[arg(long, default_value = "/", hide = true)]
    pub root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "this host is already registered with {existing} as {existing_labels}; installing for {wanted} as {wanted_labels} needs --force (the old agent stays listed there until `launch agents revoke`)"
    )]
    Registered {
        existing: String,
        existing_labels: String,
        wanted: String,
        wanted_labels: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Systemd(String),
}

/// The subset of `/etc/launch/agent.toml` that install writes and reads.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct InstalledConfig {
    control_url: Setting,
    join_token: Option<String>,
    labels: String,
    data_dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_cert: Option<PathBuf>,
}

/// `root` + an absolute path.
fn under(root: &Path, path: impl AsRef<Path>) -> PathBuf {
    root.join(path.as_ref().strip_prefix("/").unwrap_or(path.as_ref()))
}

/// What install did, for the one line it prints.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Installed,
    Unchanged,
}

pub fn install(args: &InstallArgs) -> Result<Outcome, InstallError> {
    let labels =
        Labels::parse(&args.labels).map_err(|e| InstallError::Invalid(format!("--labels: {e}")))?;
    let control_urls: Vec<String> = args
        .control_url
        .iter()
        .map(|url| url.trim().trim_end_matches('/').to_owned())
        .filter(|url| !url.is_empty())
        .collect();
    if control_urls.is_empty() {
        return Err(InstallError::Invalid(
            "--control-url is empty: give the control plane's URL, e.g. http://10.0.0.5:7400"
                .into(),
        ));
    }
    for control_url in &control_urls {
        if !(control_url.starts_with("http://") || control_url.starts_with("https://")) {
            return Err(InstallError::Invalid(format!(
                "--control-url {control_url:?} must be an http:// or https:// URL, e.g. http://10.0.0.5:7400"
            )));
        }
    }
    let plain = control_urls.iter().find(|url| !url.starts_with("https://"));
    let control_url = Setting::from_urls(control_urls.clone());
    if args.join_token.trim().is_empty() {
        return Err(InstallError::Invalid(
            "--join-token is empty: create one with `launch token create --service S --env E`"
                .into(),
        ));
    }
    let ca_pem = match &args.ca_cert {
        None => None,
        Some(_) if plain.is_some() => {
            let control_url = plain.expect("checked");
            return Err(InstallError::Invalid(format!(
                "--ca-cert is only used with an https:// control url, but it is {control_url:?}: use https://"
            )));
        }
        Some(path) => match std::fs::read(path) {
            Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => {
                Some(pem)
            }
            Ok(_) => {
                return Err(InstallError::Invalid(format!(
                    "--ca-cert {} holds no PEM CERTIFICATE block: give the CA that signed the control plane's certificate",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(InstallError::Invalid(format!(
                    "cannot read --ca-cert {}: {e}",
                    path.display()
                )));
            }
        },
    };
    let config_path = under(&args.root, DEFAULT_CONFIG_FILE);
    let ca_path = under(&args.root, CA_CERT_FILE);
    let data_dir = under(&args.root, &args.data_dir);
    let registered = data_dir.join(TOKEN_FILE).is_file();
    let existing: Option<InstalledConfig> = std::fs::read_to_string(&config_path)
        .ok()
        .and_then(|text| toml::from_str(&text).ok());

    if let Some(existing) = &existing {
        let same_place = existing.control_url.urls() == control_urls
            && Labels::parse(&existing.labels).map(|l| l.to_string()).ok()
                == Some(labels.to_string());
        if registered && !same_place {
            if !args.force {
                return Err(InstallError::Registered {
                    existing: existing.control_url.urls().join(", "),
                    existing_labels: existing.labels.clone(),
                    wanted: control_urls.join(", "),
                    wanted_labels: labels.to_string(),
                });
            }
            // A new registration: the old identity must not be reused.
            for file in [TOKEN_FILE, IDENTITY_FILE] {
                let _ = std::fs::remove_file(data_dir.join(file));
            }
        }
    }

    let config = InstalledConfig {
        control_url,
        join_token: Some(args.join_token.trim().to_owned()),
        labels: labels.to_string(),
        data_dir: args.data_dir.clone(),
        advertise_host: args.advertise_host.clone(),
        ca_cert: ca_pem.as_ref().map(|_| PathBuf::from(CA_CERT_FILE)),
    };
    let text = toml::to_string(&config).map_err(|e| InstallError::Invalid(e.to_string()))?;
    let binary = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| InstallError::Invalid(format!("cannot find the launch-agent binary: {e}")))?;
    let unit = unit(&binary, &args.data_dir);
    let unit_path = under(&args.root, UNIT_DIR).join(UNIT_NAME);
    let unchanged = std::fs::read_to_string(&config_path).ok().as_deref() == Some(text.as_str())
        && std::fs::read_to_string(&unit_path).ok().as_deref() == Some(unit.as_str())
        && ca_pem
            .as_ref()
            .is_none_or(|pem| std::fs::read(&ca_path).ok().as_ref() == Some(pem));

    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Write { path, source }
    };
    let config_dir = config_path.parent().expect("config path has a parent");
    create_private_dir(config_dir).map_err(write_err(config_dir))?;
    if let Some(pem) = &ca_pem {
        write_public(&ca_path, pem).map_err(write_err(&ca_path))?;
    }
    write_private(&config_path, text.as_bytes()).map_err(write_err(&config_path))?;
    create_private_dir(&data_dir).map_err(write_err(&data_dir))?;
    let unit_dir = unit_path.parent().expect("unit path has a parent");
    std::fs::create_dir_all(unit_dir).map_err(write_err(unit_dir))?;
    write_public(&unit_path, unit.as_bytes()).map_err(write_err(&unit_path))?;

    if !args.no_start {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", UNIT_NAME])?;
        // A changed config needs a restart; an unchanged one just makes sure it runs.
        systemctl(&[if unchanged { "start" } else { "restart" }, UNIT_NAME])?;
    }
    Ok(if unchanged {
        Outcome::Unchanged
    } else {
        Outcome::Installed
    })
}

pub fn uninstall(args: &UninstallArgs) -> Result<(), InstallError> {
    let config_path = under(&args.root, DEFAULT_CONFIG_FILE);
    let unit_path = under(&args.root, UNIT_DIR).join(UNIT_NAME);
    let config: Option<InstalledConfig> = std::fs::read_to_string(&config_path)
        .ok()
        .and_then(|text| toml::from_str(&text).ok());
    if unit_path.exists() && args.root == Path::new("/") {
        systemctl(&["disable", "--now", UNIT_NAME])?;
    }
    let data_dir = under(
        &args.root,
        config
            .as_ref()
            .map(|c| c.data_dir.clone())
            .unwrap_or(DEFAULT_DATA_DIR.into()),
    );
    let labels = config.as_ref().and_then(|c| Labels::parse(&c.labels).ok());
    if let (true, Some(labels)) = (args.stop_services, labels) {
        stop_services(&data_dir, &labels)?;
    }
    let ca_path = under(&args.root, CA_CERT_FILE);
    for path in [&unit_path, &config_path, &ca_path] {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(InstallError::Write {
                    path: path.clone(),
                    source,
                });
            }
        }
    }
    if args.root == Path::new("/") && Path::new("/run/systemd/system").exists() {
        systemctl(&["daemon-reload"])?;
    }
    if args.purge {
        std::fs::remove_dir_all(&data_dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|source| InstallError::Write {
                path: data_dir.clone(),
                source,
            })?;
    }
    Ok(())
}

/// `compose down` for the service's current release.
fn stop_services(data_dir: &Path, labels: &Labels) -> Result<(), InstallError> {
    let service = crate::release::ServiceDir::new(data_dir, labels.service.as_str());
    let Some(current) = service.current() else {
        return Ok(());
    };
    let dir = service.release(&current);
    let Some(file) = launch_core::bundle::COMPOSE_FILES
        .iter()
        .find(|f| dir.join(f).is_file())
    else {
        return Ok(());
    };
    let project = launch_core::names::project_name(&labels.service, &labels.environment);
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = if plugin {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    };
    let status = command
        .current_dir(&dir)
        .args(["-f", file, "-p", &project, "down", "--remove-orphans"])
        .status()
        .map_err(|e| {
            InstallError::Systemd(format!("cannot run compose down for {project}: {e}"))
        })?;
    if !status.success() {
        return Err(InstallError::Systemd(format!(
            "compose down for {project} failed ({status})"
        )));
    }
    Ok(())
}

fn systemctl(args: &[&str]) -> Result<(), InstallError> {
    let output = Command::new("systemctl").args(args).output().map_err(|e| {
        InstallError::Systemd(format!(
            "cannot run systemctl ({e}): without systemd, run `launch-agent run --config {DEFAULT_CONFIG_FILE}` under your init system, or pass --no-start"
        ))
    })?;
    if !output.status.success() {
        return Err(InstallError::Systemd(format!(
            "systemctl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// 0644, atomically: a unit is public, but a half-written one must never load.
fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)
}

/// The systemd unit. The hardening keeps what the agent needs: the Docker
/// socket, its data dir, the directory of its own binary (a self-upgrade
/// renames the new binary over it and keeps the old one beside it), the
/// network; the containers belong to dockerd, so stopping the agent never
/// stops a service.
pub fn unit(binary: &Path, data_dir: &Path) -> String {
    format!(
        "[Unit]
Description=Launch agent: runs deploy missions for this host's service
Wants=network-online.target
After=network-online.target docker.service

[Service]
Type=simple
ExecStart={binary} run --config {DEFAULT_CONFIG_FILE}
Restart=always
RestartSec=2
TimeoutStopSec=30
Environment=LAUNCH_LOG=info
Environment=DOCKER_CONFIG={data}/.docker
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
ReadWritePaths={data} {binary_dir}

[Install]
WantedBy=multi-user.target
",
        binary = binary.display(),
        data = data_dir.display(),
        binary_dir = binary.parent().unwrap_or(Path::new("/")).display(),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn args(root: &Path, url: &str, labels: &str) -> InstallArgs {
        InstallArgs {
            control_url: vec![url.into()],
            join_token: "lt_join_secret".into(),
            labels: labels.into(),
            data_dir: DEFAULT_DATA_DIR.into(),
            advertise_host: None,
            ca_cert: None,
            no_start: true,
            force: false,
            root: root.to_path_buf(),
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn several_control_urls_are_written_as_a_list_the_agent_reads() {
        let root = tempfile::tempdir().unwrap();
        let mut a = args(root.path(), "", "service-name=hello,environment=prod");
        a.control_url = vec![
            "http://10.0.0.5:7400/".into(),
            "http://10.0.0.6:7400".into(),
        ];
        assert_eq!(install(&a).unwrap(), Outcome::Installed);
        let path = root.path().join("etc/launch/agent.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("control_url = [\"http://10.0.0.5:7400\", \"http://10.0.0.6:7400\"]"),
            "{text}"
        );
        let config = crate::config::Config::load(&crate::config::RunArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            config.control_urls.all(),
            ["http://10.0.0.5:7400", "http://10.0.0.6:7400"]
        );
        assert_eq!(install(&a).unwrap(), Outcome::Unchanged);
    }

    #[test]
    fn install_writes_a_private_config_and_a_unit_and_a_second_run_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let a = args(
            root.path(),
            "http://10.0.0.5:7400/",
            "service-name=hello,environment=prod",
        );
        assert_eq!(install(&a).unwrap(), Outcome::Installed);
        let config = root.path().join("etc/launch/agent.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.contains("control_url = \"http://10.0.0.5:7400\""),
            "{text}"
        );
        assert!(text.contains("join_token = \"lt_join_secret\""), "{text}");
        assert_eq!(mode(&config), 0o600);
        let unit_path = root.path().join("etc/systemd/system/launch-agent.service");
        let unit = std::fs::read_to_string(&unit_path).unwrap();
        assert!(
            unit.contains("Restart=always") && unit.contains("run --config /etc/launch/agent.toml"),
            "{unit}"
        );
        assert!(
            unit.lines().any(|l| l
                .strip_prefix("ReadWritePaths=")
                .is_some_and(|paths| paths.split(' ').count() == 2)),
            "the data dir and the binary's dir (a self-upgrade replaces the binary): {unit}"
        );
        assert!(
            !unit.contains("lt_join_secret"),
            "the join token must only be in the 0600 config"
        );
        assert_eq!(mode(&unit_path), 0o644);
        assert_eq!(install(&a).unwrap(), Outcome::Unchanged);
    }

    #[test]
    fn a_registered_host_is_not_repointed_without_force() {
        let root = tempfile::tempdir().unwrap();
        install(&args(
            root.path(),
            "http://a:7400",
            "service-name=hello,environment=prod",
        ))
        .unwrap();
        let data = root.path().join("var/lib/launch");
        std::fs::write(data.join(TOKEN_FILE), "lt_agent_x").unwrap();
        let mut other = args(
            root.path(),
            "http://b:7400",
            "service-name=hello,environment=prod",
        );
        let err = install(&other).unwrap_err().to_string();
        assert!(
            err.contains("already registered with http://a:7400") && err.contains("--force"),
            "{err}"
        );
        let text = std::fs::read_to_string(root.path().join("etc/launch/agent.toml")).unwrap();
        assert!(
            text.contains("http://a:7400"),
            "a refused install must not touch the config: {text}"
        );
        other.force = true;
        install(&other).unwrap();
        assert!(
            !data.join(TOKEN_FILE).exists(),
            "--force must drop the old identity so the agent registers anew"
        );
    }

    #[test]
    fn bad_labels_or_url_are_refused_before_anything_is_written() {
        let root = tempfile::tempdir().unwrap();
        assert!(
            install(&args(
                root.path(),
                "http://a:7400",
                "service-name=Bad_Name,environment=prod"
            ))
            .is_err()
        );
        assert!(
            install(&args(
                root.path(),
                "ftp://a",
                "service-name=hello,environment=prod"
            ))
            .is_err()
        );
        assert!(!root.path().join("etc").exists());
    }

    #[test]
    fn uninstall_removes_the_unit_and_config_and_keeps_the_data_unless_purged() {
        let root = tempfile::tempdir().unwrap();
        install(&args(
            root.path(),
            "http://a:7400",
            "service-name=hello,environment=prod",
        ))
        .unwrap();
        let un = UninstallArgs {
            stop_services: false,
            purge: false,
            root: root.path().to_path_buf(),
        };
        uninstall(&un).unwrap();
        assert!(!root.path().join("etc/launch/agent.toml").exists());
        assert!(
            !root
                .path()
                .join("etc/systemd/system/launch-agent.service")
                .exists()
        );
        assert!(root.path().join("var/lib/launch").exists());
        uninstall(&UninstallArgs { purge: true, ..un }).unwrap();
        assert!(!root.path().join("var/lib/launch").exists());
    }

    #[test]
    fn install_copies_the_ca_cert_and_the_config_names_it() {
        let root = tempfile::tempdir().unwrap();
        let ca = root.path().join("given-ca.pem");
        let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
        std::fs::write(&ca, pem).unwrap();
        let mut a = args(
            root.path(),
            "https://launch.example.com:7400",
            "service-name=hello,environment=prod",
        );
        a.ca_cert = Some(ca.clone());
        assert_eq!(install(&a).unwrap(), Outcome::Installed);
        let copied = root.path().join("etc/launch/ca.pem");
        assert_eq!(std::fs::read_to_string(&copied).unwrap(), pem);
        let text = std::fs::read_to_string(root.path().join("etc/launch/agent.toml")).unwrap();
        assert!(text.contains("ca_cert = \"/etc/launch/ca.pem\""), "{text}");
        assert_eq!(install(&a).unwrap(), Outcome::Unchanged);
        std::fs::write(&ca, pem.replace("AA==", "AQ==")).unwrap();
        assert_eq!(
            install(&a).unwrap(),
            Outcome::Installed,
            "a new CA is a change"
        );

        a.control_url = vec!["http://10.0.0.5:7400".into()];
        let err = install(&a).unwrap_err().to_string();
        assert!(err.contains("use https://"), "{err}");

        uninstall(&UninstallArgs {
            stop_services: false,
            purge: false,
            root: root.path().to_path_buf(),
        })
        .unwrap();
        assert!(!copied.exists());
    }
}
