//! The `provider "launch"` block: where the control plane is, the token to
//! use with it, how to reach AWS and which Cloudflare zone holds public DNS
//! records. `configure` turns that into `Clients` that every `launch_service`
//! operation shares. The EC2 and Cloudflare clients are built on first use, so
//! a plan with nothing to read never waits for AWS's region or credential
//! discovery, and an incomplete `cloudflare` setting only matters to a
//! service with `public = true`. The Proxmox client likewise: only a
//! `target = "proxmox"` service needs the `proxmox` settings.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, NestedBlock, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, DynamicResource, Provider};
use tokio::sync::OnceCell;

use crate::cloudflare::{self, Cloudflare};
use crate::control::ControlPlane;
use crate::docker::{self, Docker};
use crate::ec2::{Ec2, Ec2Settings};
use crate::proxmox::{self, Proxmox};
use crate::service::ServiceResource;

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Config {
    pub control_url: Value<String>,
    pub token: Value<String>,
    pub aws: Value<Vec<AwsConfig>>,
    pub cloudflare: Value<Vec<CloudflareConfig>>,
    pub proxmox: Value<Vec<ProxmoxConfig>>,
    pub docker: Value<Vec<DockerConfig>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct DockerConfig {
    pub host: Value<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ProxmoxConfig {
    pub endpoint: Value<String>,
    pub api_token: Value<String>,
    pub insecure: Value<bool>,
    pub ssh_user: Value<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct CloudflareConfig {
    pub api_token: Value<String>,
    pub zone_id: Value<String>,
    pub domain: Value<String>,
    pub api_url: Value<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct AwsConfig {
    pub region: Value<String>,
    pub profile: Value<String>,
}

/// What `configure` produced, shared by every resource instance.
pub struct Clients {
    pub control: ControlPlane,
    ec2_settings: Ec2Settings,
    ec2: OnceCell<Ec2>,
    /// Resolved Cloudflare settings, or what is missing from them.
    cloudflare_settings: Result<cloudflare::Settings, String>,
    cloudflare: OnceCell<Cloudflare>,
    /// Resolved Proxmox settings, or what is missing from them.
    proxmox_settings: Result<proxmox::Settings, String>,
    proxmox: OnceCell<Proxmox>,
    docker_settings: docker::Settings,
    docker: OnceCell<Docker>,
}

impl Clients {
    /// The DNS domain, or what to set to get one.
    pub fn dns_domain(&self) -> Result<String, String> {
        self.cloudflare_settings
            .as_ref()
            .map(|s| s.domain.trim().trim_end_matches('.').to_ascii_lowercase())
            .map_err(Clone::clone)
    }

    pub async fn cloudflare(&self) -> Result<&Cloudflare, String> {
        let settings = self.cloudflare_settings.as_ref().map_err(Clone::clone)?;
        self.cloudflare
            .get_or_try_init(|| async { Cloudflare::new(settings).map_err(|e| e.to_string()) })
            .await
    }

    /// Whether a Proxmox endpoint is configured at all.
    pub fn proxmox_configured(&self) -> bool {
        self.proxmox_settings.is_ok()
    }

    /// What is missing from the Proxmox settings, if anything.
    pub fn proxmox_missing(&self) -> Option<&str> {
        self.proxmox_settings.as_ref().err().map(String::as_str)
    }

    pub async fn proxmox(&self) -> Result<&Proxmox, String> {
        let settings = self.proxmox_settings.as_ref().map_err(Clone::clone)?;
        self.proxmox
            .get_or_try_init(|| async { Proxmox::new(settings).map_err(|e| e.to_string()) })
            .await
    }

    /// The Docker engine, checked to answer on first use.
    pub async fn docker(&self) -> Result<&Docker, docker::DockerError> {
        self.docker
            .get_or_try_init(|| Docker::connect(&self.docker_settings))
            .await
    }

    /// Whether `docker { host }` or `DOCKER_HOST` names an engine, or the
    /// local socket exists: only then does import look for containers.
    pub fn docker_configured(&self) -> bool {
        self.docker_settings.host.is_some()
            || std::env::var_os("DOCKER_HOST").is_some()
            || std::path::Path::new("/var/run/docker.sock").exists()
    }

    pub async fn ec2(&self) -> Result<&Ec2, crate::ec2::Ec2Error> {
        self.ec2
            .get_or_try_init(|| Ec2::connect(&self.ec2_settings))
            .await
    }
}

#[cfg(test)]
impl Clients {
    /// Clients that reach nothing: a lazily dialled control plane and no
    /// target or DNS settings, for tests that never call out.
    pub fn offline() -> Clients {
        Clients {
            control: ControlPlane::new("http://127.0.0.1:9", "test").expect("a valid URL"),
            ec2_settings: Ec2Settings::default(),
            ec2: OnceCell::new(),
            cloudflare_settings: Err("not configured".to_owned()),
            cloudflare: OnceCell::new(),
            proxmox_settings: Err("not configured".to_owned()),
            proxmox: OnceCell::new(),
            docker_settings: docker::Settings::default(),
            docker: OnceCell::new(),
        }
    }
}

pub type SharedClients = Arc<RwLock<Option<Arc<Clients>>>>;

#[derive(Default)]
pub struct LaunchProvider {
    clients: SharedClients,
}

pub(crate) fn attribute(
    attr_type: AttributeType,
    constraint: AttributeConstraint,
    description: &str,
) -> Attribute {
    Attribute {
        attr_type,
        description: Description::markdown(description.to_owned()),
        constraint,
        sensitive: false,
        deprecated: false,
    }
}

/// A configured string, falling back to an environment variable.
fn setting(value: &Value<String>, env: &str) -> Option<String> {
    value
        .as_ref_option()
        .cloned()
        .or_else(|| std::env::var(env).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn cloudflare_block(config: &Config) -> CloudflareConfig {
    config
        .cloudflare
        .as_ref_option()
        .and_then(|b| b.first())
        .cloned()
        .unwrap_or_default()
}

/// The Cloudflare settings, each from the block or its environment
/// variable; `Err` names every missing one and how to set it.
fn cloudflare_settings(cf: &CloudflareConfig) -> Result<cloudflare::Settings, String> {
    let api_token = setting(&cf.api_token, "CLOUDFLARE_API_TOKEN");
    let zone_id = setting(&cf.zone_id, "CLOUDFLARE_ZONE_ID");
    let domain = setting(&cf.domain, "CLOUDFLARE_DOMAIN");
    let api_url = setting(&cf.api_url, "CLOUDFLARE_API_URL")
        .unwrap_or_else(|| cloudflare::DEFAULT_API_URL.to_owned());
    let missing: Vec<String> = [
        ("api_token", "CLOUDFLARE_API_TOKEN", api_token.is_none()),
        ("zone_id", "CLOUDFLARE_ZONE_ID", zone_id.is_none()),
        ("domain", "CLOUDFLARE_DOMAIN", domain.is_none()),
    ]
    .iter()
    .filter(|(_, _, missing)| *missing)
    .map(|(name, env, _)| format!("{name} (or {env})"))
    .collect();
    match (api_token, zone_id, domain) {
        (Some(api_token), Some(zone_id), Some(domain)) => Ok(cloudflare::Settings {
            api_url,
            api_token,
            zone_id,
            domain,
        }),
        _ => Err(format!(
            "Cloudflare DNS is not configured: set {} in a cloudflare {{ }} block of provider \"launch\"",
            missing.join(", ")
        )),
    }
}

fn docker_block(config: &Config) -> DockerConfig {
    config
        .docker
        .as_ref_option()
        .and_then(|b| b.first())
        .cloned()
        .unwrap_or_default()
}

fn proxmox_block(config: &Config) -> ProxmoxConfig {
    config
        .proxmox
        .as_ref_option()
        .and_then(|b| b.first())
        .cloned()
        .unwrap_or_default()
}

/// The Proxmox settings, each from the block or its environment variable;
/// `Err` names every missing one and how to set it.
fn proxmox_settings(pve: &ProxmoxConfig) -> Result<proxmox::Settings, String> {
    let endpoint = setting(&pve.endpoint, "PROXMOX_VE_ENDPOINT");
    let api_token = setting(&pve.api_token, "PROXMOX_VE_API_TOKEN");
    let insecure = match pve.insecure {
        Value::Value(insecure) => insecure,
        _ => std::env::var("PROXMOX_VE_INSECURE")
            .map(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"))
            .unwrap_or(false),
    };
    let ssh_user =
        setting(&pve.ssh_user, "PROXMOX_VE_SSH_USERNAME").unwrap_or_else(|| "root".to_owned());
    match (endpoint, api_token) {
        (Some(endpoint), Some(api_token)) => Ok(proxmox::Settings {
            endpoint,
            api_token,
            insecure,
            ssh_user,
        }),
        (endpoint, _) => {
            let mut missing = Vec::new();
            if endpoint.is_none() {
                missing.push("endpoint (or PROXMOX_VE_ENDPOINT)");
            }
            missing.push("api_token (or PROXMOX_VE_API_TOKEN)");
            if endpoint.is_some() {
                missing.remove(0);
            }
            Err(format!(
                "Proxmox is not configured: set {} in a proxmox {{ }} block of provider \"launch\"",
                missing.join(", ")
            ))
        }
    }
}

#[async_trait]
impl Provider for LaunchProvider {
    type Config<'a> = Config;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        use AttributeConstraint::Optional;
        let aws = Block {
            attributes: [
                (
                    "region".to_owned(),
                    attribute(AttributeType::String, Optional, "AWS region for instances. Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's region."),
                ),
                (
                    "profile".to_owned(),
                    attribute(AttributeType::String, Optional, "Named profile from the shared AWS config and credentials files. Default: `AWS_PROFILE`, then `default`. Credentials otherwise follow the standard chain (env, shared profile, web identity, container or instance role; IAM Identity Center (SSO) profiles are not supported: export credentials first); `AWS_ENDPOINT_URL_EC2` points EC2 calls elsewhere."),
                ),
            ]
            .into(),
            description: Description::markdown("How to reach AWS for `target = \"aws\"` services."),
            ..Default::default()
        };
        let mut api_token = attribute(
            AttributeType::String,
            Optional,
            "Cloudflare API token with the Zone / DNS / Edit permission on `zone_id`. Sent only to `api_url`; never logged nor stored in state. Default: `CLOUDFLARE_API_TOKEN`.",
        );
        api_token.sensitive = true;
        let cloudflare = Block {
            attributes: [
                ("api_token".to_owned(), api_token),
                (
                    "zone_id".to_owned(),
                    attribute(AttributeType::String, Optional, "ID of the Cloudflare zone that holds `domain` (the zone overview page shows it). Default: `CLOUDFLARE_ZONE_ID`."),
                ),
                (
                    "domain".to_owned(),
                    attribute(AttributeType::String, Optional, "Domain under which services get names: `<name>.<domain>` in `prod`, `<name>-<environment>.<domain>` elsewhere, e.g. `example.com`. Default: `CLOUDFLARE_DOMAIN`."),
                ),
                (
                    "api_url".to_owned(),
                    attribute(AttributeType::String, Optional, "Base URL of the Cloudflare API. Default: `CLOUDFLARE_API_URL`, then `https://api.cloudflare.com/client/v4`; change it only to point at a test double."),
                ),
            ]
            .into(),
            description: Description::markdown("Cloudflare DNS for services with `public = true`. `api_token`, `zone_id` and `domain` are needed (here or in the environment) only when a service is public."),
            ..Default::default()
        };
        let mut pve_token = attribute(
            AttributeType::String,
            Optional,
            "Proxmox API token as `user@realm!tokenid=secret`, e.g. `terraform@pve!launch=…`. Sent only to `endpoint`; never logged nor stored in state. Default: `PROXMOX_VE_API_TOKEN`.",
        );
        pve_token.sensitive = true;
        let proxmox = Block {
            attributes: [
                (
                    "endpoint".to_owned(),
                    attribute(AttributeType::String, Optional, "Any node's API address, e.g. `https://pve.example.com:8006`. Default: `PROXMOX_VE_ENDPOINT`."),
                ),
                ("api_token".to_owned(), pve_token),
                (
                    "insecure".to_owned(),
                    attribute(AttributeType::Bool, Optional, "Accept the node's certificate without checking it (a fresh node's is self-signed). Default `false`, or `PROXMOX_VE_INSECURE`."),
                ),
                (
                    "ssh_user".to_owned(),
                    attribute(AttributeType::String, Optional, "User the provider logs in as over SSH to run the bootstrap in a new container; not `root`, it runs it through `sudo`. Default: `PROXMOX_VE_SSH_USERNAME`, then `root` (the user `ssh-public-keys` authorizes on a standard template)."),
                ),
            ]
            .into(),
            description: Description::markdown("Proxmox VE for `target = \"proxmox\"` services. `endpoint` and `api_token` are needed (here or in the environment) only when a service uses Proxmox. The machine running terraform needs the OpenSSH client (`ssh`, `ssh-keygen`) and must reach the containers' addresses on port 22."),
            ..Default::default()
        };
        let docker = Block {
            attributes: [(
                "host".to_owned(),
                attribute(AttributeType::String, Optional, "The Docker engine `target = \"docker\"` hosts run on: `unix:///path/to/docker.sock`, `tcp://host:2375` or `ssh://user@host`. Default: `DOCKER_HOST`, then the local socket. The machine running terraform needs the `docker` CLI."),
            )]
            .into(),
            description: Description::markdown("The Docker engine for `target = \"docker\"` services: each host is a container on it running systemd and `launch-agent`, which runs the service's containers beside it through the engine's socket."),
            ..Default::default()
        };
        let mut token = attribute(
            AttributeType::String,
            Optional,
            "Control-plane token (the admin token from `<data-dir>/admin.token`). Default: `LAUNCH_TOKEN`.",
        );
        token.sensitive = true;
        Some(Schema {
            version: 1,
            block: Block {
                attributes: [
                    (
                        "control_url".to_owned(),
                        attribute(AttributeType::String, Optional, "Address of the Launch control plane, e.g. `http://10.0.0.5:7400`. Hosts download `launch-agent` from it and register with it, so it must be reachable from them. Default: `LAUNCH_ADDR`."),
                    ),
                    ("token".to_owned(), token),
                ]
                .into(),
                blocks: [
                    ("aws".to_owned(), NestedBlock::Optional(aws)),
                    ("cloudflare".to_owned(), NestedBlock::Optional(cloudflare)),
                    ("proxmox".to_owned(), NestedBlock::Optional(proxmox)),
                    ("docker".to_owned(), NestedBlock::Optional(docker)),
                ]
                .into(),
                description: Description::markdown("Launch: hosts for compose services, registered with a Launch control plane."),
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Config) -> Option<()> {
        if let Some(url) = config.control_url.as_ref_option()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            diags.error(
                    "control_url must be an http:// or https:// URL",
                    format!("{url:?} is not; give the address `launch server` listens on, e.g. \"http://10.0.0.5:7400\"."),
                    AttributePath::new("control_url"),
                );
        }
        let cf = cloudflare_block(&config);
        if let Some(url) = cf.api_url.as_ref_option()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            diags.error(
                "cloudflare.api_url must be an http:// or https:// URL",
                format!("{url:?} is not; leave it unset for https://api.cloudflare.com/client/v4."),
                AttributePath::new("cloudflare")
                    .index(0)
                    .attribute("api_url"),
            );
        }
        if let Some(domain) = cf.domain.as_ref_option()
            && (domain.contains("://") || domain.contains('/') || !domain.contains('.'))
        {
            diags.error(
                "cloudflare.domain must be a bare domain name",
                format!("{domain:?} is not; write the zone's domain (or a subdomain of it) without a scheme or path, e.g. \"example.com\"."),
                AttributePath::new("cloudflare").index(0).attribute("domain"),
            );
        }
        let pve = proxmox_block(&config);
        if let Some(url) = pve.endpoint.as_ref_option()
            && !url.trim().starts_with("https://")
        {
            diags.error(
                "proxmox.endpoint must be an https:// URL",
                format!("{url:?} is not; write a node's API address, e.g. \"https://pve.example.com:8006\"."),
                AttributePath::new("proxmox").index(0).attribute("endpoint"),
            );
        }
        if let Some(token) = pve.api_token.as_ref_option()
            && !token.contains('!')
        {
            diags.error(
                "proxmox.api_token must be user@realm!tokenid=secret",
                "Create a token under Datacenter / Permissions / API Tokens and write its full ID, =, and the secret, e.g. \"terraform@pve!launch=01234567-89ab-…\".",
                AttributePath::new("proxmox").index(0).attribute("api_token"),
            );
        }
        if let Some(host) = docker_block(&config).host.as_ref_option()
            && !docker::valid_host(host.trim())
        {
            diags.error(
                "docker.host must be a Docker engine address",
                format!("{host:?} is not; write unix:///var/run/docker.sock, tcp://10.0.0.5:2375 or ssh://user@host, or remove host for DOCKER_HOST or the local socket."),
                AttributePath::new("docker").index(0).attribute("host"),
            );
        }
        Some(())
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        terraform_version: String,
        config: Config,
    ) -> Option<()> {
        tracing::debug!(%terraform_version, "configuring");
        if config.control_url.is_unknown() || config.token.is_unknown() {
            diags.root_error(
                "provider \"launch\" is configured from values known only after apply",
                "control_url and token must be known at plan time: set them from variables or LAUNCH_ADDR / LAUNCH_TOKEN, not from another resource's attributes.",
            );
            return None;
        }
        let Some(control_url) = setting(&config.control_url, "LAUNCH_ADDR") else {
            diags.error(
                "control_url is not set",
                "Set control_url in the provider \"launch\" block or LAUNCH_ADDR, e.g. http://10.0.0.5:7400.",
                AttributePath::new("control_url"),
            );
            return None;
        };
        let Some(token) = setting(&config.token, "LAUNCH_TOKEN") else {
            diags.error(
                "token is not set",
                "Set token in the provider \"launch\" block or LAUNCH_TOKEN to a control-plane token (the admin token is in <data-dir>/admin.token of the server).",
                AttributePath::new("token"),
            );
            return None;
        };
        let control = match ControlPlane::new(&control_url, &token) {
            Ok(control) => control,
            Err(e) => {
                diags.error(
                    "control_url is not usable",
                    e.to_string(),
                    AttributePath::new("control_url"),
                );
                return None;
            }
        };
        let aws = config
            .aws
            .as_ref_option()
            .and_then(|b| b.first())
            .cloned()
            .unwrap_or_default();
        let ec2_settings = Ec2Settings {
            region: aws
                .region
                .as_ref_option()
                .cloned()
                .filter(|s| !s.is_empty()),
            profile: aws
                .profile
                .as_ref_option()
                .cloned()
                .filter(|s| !s.is_empty()),
        };
        let cf = cloudflare_block(&config);
        if [&cf.api_token, &cf.zone_id, &cf.domain, &cf.api_url]
            .iter()
            .any(|v| v.is_unknown())
        {
            diags.root_error(
                "provider \"launch\" has a cloudflare setting known only after apply",
                "api_token, zone_id, domain and api_url must be known at plan time: set them from variables or CLOUDFLARE_* environment variables.",
            );
            return None;
        }
        let pve = proxmox_block(&config);
        if [&pve.endpoint, &pve.api_token, &pve.ssh_user]
            .iter()
            .any(|v| v.is_unknown())
            || pve.insecure.is_unknown()
        {
            diags.root_error(
                "provider \"launch\" has a proxmox setting known only after apply",
                "endpoint, api_token, insecure and ssh_user must be known at plan time: set them from variables or PROXMOX_VE_* environment variables.",
            );
            return None;
        }
        if docker_block(&config).host.is_unknown() {
            diags.root_error(
                "provider \"launch\" has a docker setting known only after apply",
                "docker.host must be known at plan time: set it from a variable or DOCKER_HOST.",
            );
            return None;
        }
        let clients = Arc::new(Clients {
            control,
            ec2_settings,
            ec2: OnceCell::new(),
            cloudflare_settings: cloudflare_settings(&cf),
            cloudflare: OnceCell::new(),
            proxmox_settings: proxmox_settings(&pve),
            proxmox: OnceCell::new(),
            docker_settings: docker::Settings {
                host: docker_block(&config)
                    .host
                    .as_ref_option()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty()),
            },
            docker: OnceCell::new(),
        });
        *self.clients.write().expect("provider clients lock") = Some(clients);
        Some(())
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<std::collections::HashMap<String, Box<dyn DynamicResource>>> {
        Some(
            [
                (
                    "service".to_owned(),
                    Box::new(ServiceResource::new(self.clients.clone()))
                        as Box<dyn DynamicResource>,
                ),
                (
                    "aws_security_group".to_owned(),
                    Box::new(crate::security_group::SecurityGroupResource::new(
                        self.clients.clone(),
                    )) as Box<dyn DynamicResource>,
                ),
            ]
            .into(),
        )
    }
}
