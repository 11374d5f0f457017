//! The agent's one typed config, layered flags > env (`LAUNCH_AGENT_*`) >
//! TOML file (`--config`, else `/etc/launch/agent.toml` when it exists) >
//! defaults, and validated at start: every problem is reported at once, and
//! the binary exits 64 before touching the network. A `ca_cert` is read
//! here too, so a missing or unreadable CA file is a config error, not a
//! reconnect loop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use launch_core::labels::Labels;

use crate::control_urls::ControlUrls;
use serde::Deserialize;

pub const DEFAULT_CONFIG_FILE: &str = "/etc/launch/agent.toml";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/launch";
/// The agent's default ceiling on a bundle's compressed size (4 GiB).
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Flags of `launch-agent run`; each also reads its `LAUNCH_AGENT_*` variable.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RunArgs {
    /// TOML config file [default: /etc/launch/agent.toml if it exists]
    #[arg(long, env = "LAUNCH_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The control plane, e.g. https://launch.example.com:7400; repeat it
    /// (or separate with commas) for replicas, tried in turn
    #[arg(long, env = "LAUNCH_AGENT_CONTROL_URL", value_delimiter = ',')]
    pub control_url: Vec<String>,
    /// Single-use join token (only needed until the agent has registered)
    #[arg(long, env = "LAUNCH_AGENT_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// service-name=S,environment=E[,key=value…]
    #[arg(long, env = "LAUNCH_AGENT_LABELS")]
    pub labels: Option<String>,
    /// Where releases, the journal and the agent token live [default: /var/lib/launch]
    #[arg(long, env = "LAUNCH_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Host name or address used in service URLs [default: the host name]
    #[arg(long, env = "LAUNCH_AGENT_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,
    /// PEM CA certificate to trust for an https:// control URL
    /// [default: the system's roots]
    #[arg(long, env = "LAUNCH_AGENT_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// The largest bundle this host accepts, whatever the control plane
    /// allows (the control plane's --max-bundle-bytes applies below it)
    /// [default: 4 GiB]
    #[arg(long, env = "LAUNCH_AGENT_MAX_BUNDLE_BYTES")]
    pub max_bundle_bytes: Option<u64>,
    /// The front door: `on` (route by host name to the services) or `off` [default: on]
    #[arg(long, env = "LAUNCH_AGENT_INGRESS")]
    pub ingress: Option<String>,
    /// Where the front door serves plain HTTP [default: 0.0.0.0:80]
    #[arg(long, env = "LAUNCH_AGENT_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Where the front door serves HTTPS [default: 0.0.0.0:443]
    #[arg(long, env = "LAUNCH_AGENT_HTTPS_LISTEN")]
    pub https_listen: Option<String>,
    /// More host names for this agent's service, comma-separated (`launch dev`:
    /// `<service>.localhost`), besides `[http] hosts` and the public name
    #[arg(long, env = "LAUNCH_AGENT_INGRESS_HOSTS")]
    pub ingress_hosts: Option<String>,
    /// ACME directory URL for the front door's certificates
    /// [default: Let's Encrypt production]
    #[arg(long, env = "LAUNCH_AGENT_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// PEM root to trust for a private ACME server (e.g. pebble) instead of the system's roots
    #[arg(long, env = "LAUNCH_AGENT_ACME_CA_ROOT")]
    pub acme_ca_root: Option<PathBuf>,
    /// Contact email for the ACME account (expiry notices)
    #[arg(long, env = "LAUNCH_AGENT_ACME_EMAIL")]
    pub acme_email: Option<String>,
    /// How long a self-upgraded agent has to reconnect before the watchdog
    /// puts the previous binary back [default: 60s]
    #[arg(long, env = "LAUNCH_AGENT_UPGRADE_WINDOW", value_parser = humantime::parse_duration)]
    pub upgrade_window: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    control_url: Option<crate::control_urls::Setting>,
    join_token: Option<String>,
    labels: Option<String>,
    data_dir: Option<PathBuf>,
    advertise_host: Option<String>,
    ca_cert: Option<PathBuf>,
    max_bundle_bytes: Option<u64>,
    ingress: Option<String>,
    http_listen: Option<String>,
    https_listen: Option<String>,
    ingress_hosts: Option<String>,
    acme_directory: Option<String>,
    acme_ca_root: Option<PathBuf>,
    acme_email: Option<String>,
}

#[derive(Clone)]
pub struct Config {
    /// The control plane's URLs and the one in use.
    pub control_urls: ControlUrls,
    pub join_token: Option<String>,
    pub labels: Labels,
    pub data_dir: PathBuf,
    pub advertise_host: String,
    pub hostname: String,
    /// The PEM of the CA to trust for an `https://` control URL (`None`:
    /// the system's roots).
    pub ca_pem: Option<Vec<u8>>,
    /// Longest any single docker command may run.
    pub command_timeout: Duration,
    /// The agent's own ceiling on a bundle's compressed size.
    pub max_bundle_bytes: u64,
    /// The front door's listeners (`None`: `--ingress off`).
    pub ingress: Option<crate::ingress::Settings>,
    /// The ACME directory the front door's certificates are ordered from.
    pub acme_directory: String,
    /// The PEM root of a private ACME server (`None`: the system's roots).
    pub acme_ca_root: Option<Vec<u8>>,
    pub acme_email: Option<String>,
    /// How long a self-upgraded agent has to reconnect (`upgrade`).
    pub upgrade_window: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("control_urls", &self.control_urls.all())
            .field("join_token", &self.join_token.as_ref().map(|_| "<set>"))
            .field("labels", &self.labels.to_string())
            .field("data_dir", &self.data_dir)
            .field("advertise_host", &self.advertise_host)
            .field("ca_cert", &self.ca_pem.is_some())
            .field("ingress", &self.ingress)
            .field("acme_directory", &self.acme_directory)
            .field("acme_ca_root", &self.acme_ca_root.is_some())
            .field("acme_email", &self.acme_email)
            .finish()
    }
}

impl Config {
    /// Layers `args` over the config file and validates the result.
    pub fn load(args: &RunArgs) -> Result<Config, Vec<String>> {
        let (path, required) = match &args.config {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let file = match read_file(&path, required) {
            Ok(file) => file,
            Err(error) => return Err(vec![error]),
        };
        Self::layer(args, file, &path)
    }

    fn layer(args: &RunArgs, file: FileConfig, path: &Path) -> Result<Config, Vec<String>> {
        let mut errors = Vec::new();
        let file_ingress = IngressFile {
            ingress: file.ingress.clone(),
            http_listen: file.http_listen.clone(),
            https_listen: file.https_listen.clone(),
            ingress_hosts: file.ingress_hosts.clone(),
        };
        let acme = acme(args, &file, &mut errors);
        let control_urls = match args.control_url.is_empty() {
            false => args.control_url.clone(),
            true => file.control_url.map(|s| s.urls()).unwrap_or_default(),
        };
        let control_urls: Vec<String> = control_urls
            .into_iter()
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty())
            .collect();
        if control_urls.is_empty() {
            errors.push(format!(
                "no control plane: pass --control-url, set LAUNCH_AGENT_CONTROL_URL or control_url in {}",
                path.display()
            ));
        }
        for url in &control_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                errors.push(format!(
                    "control url {url:?} must start with http:// or https://, e.g. http://10.0.0.2:7400"
                ));
            }
        }
        let plain = control_urls.iter().find(|url| !url.starts_with("https://"));
        let labels = match args.labels.clone().or(file.labels) {
            None => {
                errors.push(
                    "no labels: pass --labels service-name=S,environment=E (or LAUNCH_AGENT_LABELS)".to_owned(),
                );
                None
            }
            Some(text) => Labels::parse(&text)
                .map_err(|e| errors.push(e.to_string()))
                .ok(),
        };
        let join_token = args
            .join_token
            .clone()
            .or(file.join_token)
            .filter(|t| !t.trim().is_empty());
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            errors.push("the data dir is empty: pass --data-dir".to_owned());
        }
        let hostname = hostname();
        let advertise_host = args
            .advertise_host
            .clone()
            .or(file.advertise_host)
            .unwrap_or_else(|| hostname.clone());
        let ca_pem = match args.ca_cert.clone().or(file.ca_cert) {
            None => None,
            Some(path) if plain.is_some() => {
                let control_url = plain.expect("checked");
                errors.push(format!(
                    "a CA certificate ({}) is only used with an https:// control url, but it is {control_url:?}: use https://",
                    path.display()
                ));
                None
            }
            Some(path) => match std::fs::read(&path) {
                Ok(pem)
                    if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") =>
                {
                    Some(pem)
                }
                Ok(_) => {
                    errors.push(format!(
                        "the CA certificate {} holds no PEM CERTIFICATE block: give the CA that signed the control plane's certificate",
                        path.display()
                    ));
                    None
                }
                Err(e) => {
                    errors.push(format!(
                        "cannot read the CA certificate {}: {e}; fix --ca-cert (LAUNCH_AGENT_CA_CERT, ca_cert in the config)",
                        path.display()
                    ));
                    None
                }
            },
        };
        let max_bundle_bytes = args
            .max_bundle_bytes
            .or(file.max_bundle_bytes)
            .unwrap_or(DEFAULT_MAX_BUNDLE_BYTES);
        if max_bundle_bytes == 0 {
            errors.push("--max-bundle-bytes must be above 0".to_owned());
        }
        let ingress = ingress_settings(args, &file_ingress, &mut errors);
        match labels {
            Some(labels) if errors.is_empty() => Ok(Config {
                control_urls: ControlUrls::new(control_urls),
                join_token,
                labels,
                data_dir,
                advertise_host,
                hostname,
                ca_pem,
                command_timeout: Duration::from_secs(600),
                max_bundle_bytes,
                ingress,
                acme_directory: acme.0,
                acme_ca_root: acme.1,
                acme_email: acme.2,
                upgrade_window: args.upgrade_window.unwrap_or(Duration::from_secs(60)),
            }),
            _ => Err(errors),
        }
    }
}

/// The front door's part of the config file.
struct IngressFile {
    ingress: Option<String>,
    http_listen: Option<String>,
    https_listen: Option<String>,
    ingress_hosts: Option<String>,
}

fn ingress_settings(
    args: &RunArgs,
    file: &IngressFile,
    errors: &mut Vec<String>,
) -> Option<crate::ingress::Settings> {
    let on = match args.ingress.as_deref().or(file.ingress.as_deref()) {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => {
            errors.push(format!(
                "ingress = {other:?} is neither on nor off: pass --ingress on or --ingress off"
            ));
            false
        }
    };
    let mut listen = |flag: &str, value: Option<&str>, default: &str| {
        let value = value.unwrap_or(default);
        match value.parse::<std::net::SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                errors.push(format!(
                    "--{flag} {value:?} is not an address: give IP:PORT, e.g. {default}"
                ));
                None
            }
        }
    };
    let http = listen(
        "http-listen",
        args.http_listen.as_deref().or(file.http_listen.as_deref()),
        "0.0.0.0:80",
    );
    let https = listen(
        "https-listen",
        args.https_listen
            .as_deref()
            .or(file.https_listen.as_deref()),
        "0.0.0.0:443",
    );
    let mut extra_hosts = Vec::new();
    let hosts = args
        .ingress_hosts
        .as_deref()
        .or(file.ingress_hosts.as_deref());
    for host in hosts.unwrap_or_default().split(',').map(str::trim) {
        if host.is_empty() {
            continue;
        }
        if launch_core::service_config::is_host_name(host) {
            extra_hosts.push(host.to_ascii_lowercase());
        } else {
            errors.push(format!(
                "--ingress-hosts: {host:?} is not a host name: give DNS names, e.g. hello.localhost"
            ));
        }
    }
    match (on, http, https) {
        (true, Some(http), Some(https)) => Some(crate::ingress::Settings {
            http,
            https,
            timeouts: crate::ingress::Timeouts::default(),
            drain: crate::ingress::DEFAULT_DRAIN,
            extra_hosts,
        }),
        _ => None,
    }
}

/// The ACME settings: an https:// directory, a readable PEM root, an email.
fn acme(
    args: &RunArgs,
    file: &FileConfig,
    errors: &mut Vec<String>,
) -> (String, Option<Vec<u8>>, Option<String>) {
    let directory = args
        .acme_directory
        .clone()
        .or(file.acme_directory.clone())
        .unwrap_or_else(|| crate::ingress::acme::LETS_ENCRYPT.to_owned());
    if !directory.starts_with("https://") {
        errors.push(format!(
            "acme directory {directory:?} must be an https:// URL, e.g. https://acme-staging-v02.api.letsencrypt.org/directory (--acme-directory)"
        ));
    }
    let root = match args.acme_ca_root.clone().or(file.acme_ca_root.clone()) {
        None => None,
        Some(path) => match std::fs::read(&path) {
            Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => {
                Some(pem)
            }
            Ok(_) => {
                errors.push(format!(
                    "the ACME CA root {} holds no PEM CERTIFICATE block: give the root of your ACME server's TLS certificate (--acme-ca-root)",
                    path.display()
                ));
                None
            }
            Err(e) => {
                errors.push(format!(
                    "cannot read the ACME CA root {}: {e}; fix --acme-ca-root (LAUNCH_AGENT_ACME_CA_ROOT, acme_ca_root in the config)",
                    path.display()
                ));
                None
            }
        },
    };
    let email = args
        .acme_email
        .clone()
        .or(file.acme_email.clone())
        .filter(|e| !e.trim().is_empty());
    if let Some(email) = &email {
        let (user, domain) = email.split_once('@').unwrap_or(("", ""));
        if user.is_empty() || !domain.contains('.') || email.contains(char::is_whitespace) {
            errors.push(format!(
                "acme email {email:?} is not an email address, e.g. ops@example.com (--acme-email)"
            ));
        }
    }
    (directory, root, email)
}

fn read_file(path: &Path, required: bool) -> Result<FileConfig, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RunArgs {
        RunArgs {
            control_url: vec!["http://127.0.0.1:7400/".into()],
            labels: Some("service-name=hello,environment=prod".into()),
            ..RunArgs::default()
        }
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let file = FileConfig {
            control_url: Some(crate::control_urls::Setting::One("http://file:1".into())),
            data_dir: Some("/srv/launch".into()),
            ..FileConfig::default()
        };
        let config = Config::layer(&args(), file, Path::new("agent.toml")).unwrap();
        assert_eq!(config.control_urls.all(), ["http://127.0.0.1:7400"]);
        assert_eq!(config.data_dir, PathBuf::from("/srv/launch"));
        assert_eq!(config.labels.service.as_str(), "hello");
        assert!(!config.advertise_host.is_empty());
    }

    #[test]
    fn several_control_urls_come_from_flags_or_a_list_in_the_file() {
        let mut flags = args();
        flags.control_url = vec!["http://a:7400/".into(), "http://b:7400".into()];
        let config = Config::layer(&flags, FileConfig::default(), Path::new("a.toml")).unwrap();
        assert_eq!(
            config.control_urls.all(),
            ["http://a:7400", "http://b:7400"]
        );
        assert_eq!(config.control_urls.current(), "http://a:7400");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "control_url = [\"http://c:1\", \"http://d:1/\"]\n").unwrap();
        let mut no_flag = args();
        no_flag.control_url = Vec::new();
        let config = Config::layer(&no_flag, read_file(&path, true).unwrap(), &path).unwrap();
        assert_eq!(config.control_urls.all(), ["http://c:1", "http://d:1"]);

        let mut one_bad = args();
        one_bad.control_url = vec!["http://a:7400".into(), "a:7400".into()];
        let errors =
            Config::layer(&one_bad, FileConfig::default(), Path::new("a.toml")).unwrap_err();
        assert!(
            errors[0].contains("\"a:7400\" must start with http://"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let bad = RunArgs {
            control_url: vec!["ftp://x".into()],
            labels: Some("service-name=Hello".into()),
            ..RunArgs::default()
        };
        let errors =
            Config::layer(&bad, FileConfig::default(), Path::new("agent.toml")).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("must start with http://"), "{errors:?}");
        assert!(errors[1].contains("invalid"), "{errors:?}");
        let errors = Config::layer(
            &RunArgs::default(),
            FileConfig::default(),
            Path::new("a.toml"),
        )
        .unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains("--control-url")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("--labels")), "{errors:?}");
    }

    #[test]
    fn the_config_file_is_strict_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "control_url = \"http://x:1\"\nlables = \"typo\"\n").unwrap();
        let error = read_file(&path, true).unwrap_err();
        assert!(error.contains("unknown field `lables`"), "{error}");
        assert!(read_file(&dir.path().join("missing.toml"), false).is_ok());
        assert!(read_file(&dir.path().join("missing.toml"), true).is_err());
    }

    #[test]
    fn a_ca_cert_is_read_at_start_and_needs_an_https_url() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let file = FileConfig {
            ca_cert: Some(ca.clone()),
            ..FileConfig::default()
        };
        let mut https = args();
        https.control_url = vec!["https://launch.example.com:7400".into()];
        let config = Config::layer(&https, file, Path::new("a.toml")).unwrap();
        assert!(
            config
                .ca_pem
                .unwrap()
                .starts_with(b"-----BEGIN CERTIFICATE-----")
        );

        let mut plain = args();
        plain.ca_cert = Some(ca);
        let errors = Config::layer(&plain, FileConfig::default(), Path::new("a.toml")).unwrap_err();
        assert!(errors[0].contains("use https://"), "{errors:?}");

        https.ca_cert = Some(dir.path().join("missing.pem"));
        let errors = Config::layer(&https, FileConfig::default(), Path::new("a.toml")).unwrap_err();
        assert!(
            errors[0].contains("cannot read the CA certificate"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_front_door_listens_on_80_and_443_unless_told_otherwise() {
        let config = Config::layer(&args(), FileConfig::default(), Path::new("a.toml")).unwrap();
        let ingress = config.ingress.unwrap();
        assert_eq!(ingress.http.to_string(), "0.0.0.0:80");
        assert_eq!(ingress.https.to_string(), "0.0.0.0:443");

        let file = FileConfig {
            http_listen: Some("127.0.0.1:8080".into()),
            ..FileConfig::default()
        };
        let mut flags = args();
        flags.https_listen = Some("127.0.0.1:8443".into());
        let ingress = Config::layer(&flags, file, Path::new("a.toml"))
            .unwrap()
            .ingress
            .unwrap();
        assert_eq!(ingress.http.to_string(), "127.0.0.1:8080");
        assert_eq!(ingress.https.to_string(), "127.0.0.1:8443");

        flags.ingress = Some("off".into());
        let config = Config::layer(&flags, FileConfig::default(), Path::new("a.toml")).unwrap();
        assert!(config.ingress.is_none());

        flags.ingress = Some("maybe".into());
        flags.http_listen = Some("80".into());
        let errors = Config::layer(&flags, FileConfig::default(), Path::new("a.toml")).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("--ingress on or --ingress off"),
            "{errors:?}"
        );
        assert!(errors[1].contains("--http-listen \"80\""), "{errors:?}");
    }

    #[test]
    fn acme_settings_default_to_lets_encrypt_and_bad_ones_are_named() {
        let config = Config::layer(&args(), FileConfig::default(), Path::new("a.toml")).unwrap();
        assert_eq!(
            config.acme_directory,
            "https://acme-v02.api.letsencrypt.org/directory"
        );
        assert!(config.acme_ca_root.is_none() && config.acme_email.is_none());

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pebble.pem");
        std::fs::write(
            &root,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let file = FileConfig {
            acme_directory: Some("https://127.0.0.1:14000/dir".into()),
            acme_ca_root: Some(root),
            acme_email: Some("ops@example.com".into()),
            ..FileConfig::default()
        };
        let config = Config::layer(&args(), file, Path::new("a.toml")).unwrap();
        assert_eq!(config.acme_directory, "https://127.0.0.1:14000/dir");
        assert!(config.acme_ca_root.is_some());
        assert_eq!(config.acme_email.as_deref(), Some("ops@example.com"));

        let mut bad = args();
        bad.acme_directory = Some("http://acme.test/dir".into());
        bad.acme_ca_root = Some(dir.path().join("missing.pem"));
        bad.acme_email = Some("nobody".into());
        let errors = Config::layer(&bad, FileConfig::default(), Path::new("a.toml")).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("--acme-directory"), "{errors:?}");
        assert!(errors[1].contains("--acme-ca-root"), "{errors:?}");
        assert!(errors[2].contains("--acme-email"), "{errors:?}");
    }

    #[test]
    fn debug_output_hides_the_join_token() {
        let mut with_token = args();
        with_token.join_token = Some("lt_join_secret".into());
        let config =
            Config::layer(&with_token, FileConfig::default(), Path::new("a.toml")).unwrap();
        assert!(!format!("{config:?}").contains("lt_join_secret"));
    }
}

#[cfg(test)]
mod fuzz {
    //! Fuzz target (proptest, bounded cases): any text in the config file is
    //! either a config or a list of errors, never a panic.
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn toml_text_never_panics(text in "(control_url|labels|join_token|data_dir|advertise_host|ca_cert|x)( = )(\"[^\"\\n]{0,30}\"|[0-9]{1,3}|true)(\n(control_url|labels|data_dir) = \"[a-z0-9=,:/.-]{0,30}\"){0,3}|\\PC{0,80}") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("agent.toml");
            std::fs::write(&path, &text).unwrap();
            let args = RunArgs { config: Some(path), ..RunArgs::default() };
            let _ = Config::load(&args);
        }
    }
}
